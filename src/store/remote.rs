//! Arrays on object storage: `s3://bucket/prefix/a.zarr` (read and write, any S3-compatible
//! server) and `https://host/path/a.zarr` (read-only, any static file server), through the
//! `object_store` crate that `zarrs_object_store` builds on.
//!
//! An array location stays a `Path` everywhere in dsk (plans serialise it, messages print it);
//! [`parse`] tells a URL from a local path. [`Remote`] is the synchronous zarrs store dsk reads
//! and writes through: one GET per chunk (zarrs' stock async-to-sync adapter sends a HEAD before
//! every GET), object sizes checked against the array's limits before a byte is downloaded, and
//! errors turned into one line that names the object's URL and says what to do. The requests run
//! on one tokio runtime per process, driven from dsk's worker threads (`block_on`), so each
//! worker thread has requests in flight; [`Remote::prefetch`] puts many more in flight at once for
//! the chunks of a task's region.
//!
//! Credentials and endpoint are taken the way the AWS tools take them ([`s3_store`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use zarrs::storage::byte_range::{ByteRange, ByteRangeIterator};
use zarrs::storage::{
    Bytes, ListableStorageTraits, MaybeBytes, MaybeBytesIterator, OffsetBytesIterator, ReadableStorageTraits,
    StorageError, StoreKey, StoreKeys, StoreKeysPrefixes, StorePrefix, WritableStorageTraits,
};
use zarrs_object_store::object_store::{
    self, path::Path as ObjPath, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};

use super::limits::{ReadLimits, MAX_METADATA_BYTES};

/// The kinds of URL dsk reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    S3,
    Http,
    Https,
}

/// An array location on object storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// The bucket (s3) or `host[:port]` (http, https).
    pub authority: String,
    /// The key prefix inside it, without leading or trailing `/` (may be empty).
    pub key: String,
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self.scheme {
            Scheme::S3 => "s3",
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        if self.key.is_empty() {
            write!(f, "{s}://{}", self.authority)
        } else {
            write!(f, "{s}://{}/{}", self.authority, self.key)
        }
    }
}

impl Url {
    /// The location of `name` under this one.
    pub fn join(&self, name: &str) -> Url {
        let name = name.trim_matches('/');
        if name.is_empty() {
            return self.clone();
        }
        let key = if self.key.is_empty() { name.to_string() } else { format!("{}/{name}", self.key) };
        Url { key, ..self.clone() }
    }

    pub fn writable(&self) -> bool {
        self.scheme == Scheme::S3
    }

    /// As a `Path`, the form dsk carries locations in.
    pub fn to_path(&self) -> std::path::PathBuf {
        self.to_string().into()
    }
}

/// `Some` when `path` is a URL (`scheme://…`): the parsed URL, or why dsk cannot use it.
pub fn parse(path: &Path) -> Option<Result<Url, String>> {
    let text = path.to_str()?;
    let (scheme, rest) = text.split_once("://")?;
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)) {
        return None;
    }
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "s3" => Scheme::S3,
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Some(Err(format!(
                "{other}:// is not a storage dsk reads — use s3://BUCKET/KEY (S3 and compatible servers), https://HOST/PATH (read-only) or a local path"
            )))
        }
    };
    let (authority, key) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Some(Err(
            "credentials in a URL are not accepted — give them in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE".into(),
        ));
    }
    if key.contains(['?', '#']) {
        return Some(Err("'?' and '#' have no place in an array's URL — remove the query or fragment".into()));
    }
    if authority.is_empty() {
        return Some(Err(match scheme {
            Scheme::S3 => "no bucket — write s3://BUCKET/PATH/TO/ARRAY.zarr".to_string(),
            _ => "no host — write https://HOST/PATH/TO/ARRAY.zarr".to_string(),
        }));
    }
    if scheme == Scheme::S3 && !valid_bucket(authority) {
        return Some(Err(format!(
            "{authority:?} is not a valid bucket name (3–63 characters: lowercase letters, digits, '.', '-')"
        )));
    }
    let key = key.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>();
    if key.iter().any(|s| *s == "." || *s == "..") {
        return Some(Err("'.' and '..' have no meaning in an object key — write the key in full".into()));
    }
    Some(Ok(Url { scheme, authority: authority.to_string(), key: key.join("/") }))
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// True when `path` names a location on object storage (or a URL dsk refuses: it is not local).
pub fn is_url(path: &Path) -> bool {
    parse(path).is_some()
}

// ---------------------------------------------------------------------------------------------
// Requests and their counts

/// What this process sent: requests by kind and bytes each way (`--progress json` reports them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    pub get: u64,
    pub head: u64,
    pub put: u64,
    pub delete: u64,
    pub list: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

static GETS: AtomicU64 = AtomicU64::new(0);
static HEADS: AtomicU64 = AtomicU64::new(0);
static PUTS: AtomicU64 = AtomicU64::new(0);
static DELETES: AtomicU64 = AtomicU64::new(0);
static LISTS: AtomicU64 = AtomicU64::new(0);
static READ: AtomicU64 = AtomicU64::new(0);
static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// The requests this process has sent so far.
pub fn traffic() -> Traffic {
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Traffic {
        get: l(&GETS),
        head: l(&HEADS),
        put: l(&PUTS),
        delete: l(&DELETES),
        list: l(&LISTS),
        bytes_read: l(&READ),
        bytes_written: l(&WRITTEN),
    }
}

fn count(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// The process's runtime for requests: a couple of threads suffice, the work is waiting.
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dsk-io")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the threads that send requests: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

// ---------------------------------------------------------------------------------------------
// Connections: credentials, endpoint, retries

static ANONYMOUS: AtomicBool = AtomicBool::new(false);

/// `--anon`: send unsigned requests (public buckets), as `AWS_NO_SIGN_REQUEST=1` does.
pub fn set_anonymous(yes: bool) {
    ANONYMOUS.store(yes, Ordering::Relaxed);
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn truthy(v: Option<String>) -> bool {
    v.is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

fn anonymous() -> bool {
    ANONYMOUS.load(Ordering::Relaxed) || truthy(env("AWS_NO_SIGN_REQUEST"))
}

/// The section `name` of an AWS INI file (`~/.aws/credentials`, `~/.aws/config`), when present.
fn ini_section(file: &Path, name: &str) -> Result<Option<HashMap<String, String>>, String> {
    if !file.is_file() {
        return Ok(None);
    }
    // as the AWS tools read them: no escapes (a secret may end in '\\' or start with '"')
    let ini = ini::Ini::load_from_file_noescape(file).map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
    Ok(ini.section(Some(name)).map(|s| s.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect()))
}

fn home_file(var: &str, rel: &str) -> Option<std::path::PathBuf> {
    env(var).map(Into::into).or_else(|| env("HOME").map(|h| Path::new(&h).join(rel)))
}

/// What the environment and the AWS files say about S3: the shared credentials file's profile
/// (`AWS_PROFILE`, else `default`) fills in what the `AWS_*` variables leave unset, and the
/// config file gives the region and `endpoint_url`.
#[derive(Default)]
struct S3Settings {
    key_id: Option<String>,
    secret: Option<String>,
    token: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    /// Where the keys came from, for messages.
    keys_from: String,
}

fn s3_settings() -> Result<S3Settings, String> {
    let profile = env("AWS_PROFILE").or_else(|| env("AWS_DEFAULT_PROFILE"));
    let name = profile.clone().unwrap_or_else(|| "default".into());
    let mut s = S3Settings {
        key_id: env("AWS_ACCESS_KEY_ID"),
        secret: env("AWS_SECRET_ACCESS_KEY"),
        token: env("AWS_SESSION_TOKEN"),
        region: env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")),
        endpoint: env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")),
        keys_from: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
    };
    let creds_file = home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
    let config_file = home_file("AWS_CONFIG_FILE", ".aws/config");
    let creds = match &creds_file {
        Some(f) => ini_section(f, &name)?,
        None => None,
    };
    let config_name = if name == "default" { name.clone() } else { format!("profile {name}") };
    let config = match &config_file {
        Some(f) => ini_section(f, &config_name)?,
        None => None,
    };
    if let (Some(p), None, None) = (&profile, &creds, &config) {
        return Err(format!(
            "AWS_PROFILE={p}: no such profile in {} or {} — set AWS_PROFILE to a profile they define, or unset it",
            creds_file.map(|f| f.display().to_string()).unwrap_or_else(|| "~/.aws/credentials".into()),
            config_file.map(|f| f.display().to_string()).unwrap_or_else(|| "~/.aws/config".into()),
        ));
    }
    // explicit variables win; keys come together or not at all
    if s.key_id.is_none() && s.secret.is_none() {
        for (sec, file) in [(&creds, &creds_file), (&config, &config_file)] {
            let Some(sec) = sec else { continue };
            if let (Some(k), Some(v)) = (sec.get("aws_access_key_id"), sec.get("aws_secret_access_key")) {
                s.key_id = Some(k.clone());
                s.secret = Some(v.clone());
                s.token = sec.get("aws_session_token").cloned();
                let f = file.as_ref().map(|f| f.display().to_string()).unwrap_or_default();
                s.keys_from = format!("the keys of profile {name} in {f}");
                break;
            }
        }
    }
    if let Some(c) = &config {
        s.region = s.region.or_else(|| c.get("region").cloned());
        s.endpoint = s.endpoint.or_else(|| c.get("endpoint_url").cloned());
    }
    Ok(s)
}

fn retry_config() -> object_store::RetryConfig {
    let retries = env("DSK_STORAGE_RETRIES").and_then(|v| v.parse().ok()).unwrap_or(10);
    let secs = env("DSK_STORAGE_RETRY_TIMEOUT").and_then(|v| v.parse().ok()).unwrap_or(120u64);
    object_store::RetryConfig {
        max_retries: retries,
        retry_timeout: Duration::from_secs(secs),
        backoff: object_store::BackoffConfig::default(),
    }
}

fn client_options(allow_http: bool) -> object_store::ClientOptions {
    let timeout = env("DSK_STORAGE_TIMEOUT").and_then(|v| v.parse().ok()).unwrap_or(30u64);
    object_store::ClientOptions::new()
        .with_allow_http(allow_http)
        .with_timeout(Duration::from_secs(timeout))
        .with_connect_timeout(Duration::from_secs(5))
}

/// Where the S3 keys came from, for messages.
fn keys_from() -> String {
    s3_settings().map(|s| s.keys_from).unwrap_or_else(|_| "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into())
}

/// The endpoint requests to `url` go to, for messages.
fn endpoint_of(url: &Url) -> String {
    match url.scheme {
        Scheme::S3 => s3_settings().ok().and_then(|s| s.endpoint).unwrap_or_else(|| "AWS S3".into()),
        Scheme::Http => format!("http://{}", url.authority),
        Scheme::Https => format!("https://{}", url.authority),
    }
}

/// Whether an EC2 instance metadata service answers (the last place credentials come from), asked
/// once with a short timeout: elsewhere, object_store would retry it for minutes before failing.
fn instance_metadata_answers() -> bool {
    use std::io::{Read, Write};
    static ANSWERS: OnceLock<bool> = OnceLock::new();
    *ANSWERS.get_or_init(|| {
        let addr = std::net::SocketAddr::from(([169, 254, 169, 254], 80));
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(1000)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_millis(2000)));
        let _ = s.set_write_timeout(Some(Duration::from_millis(1000)));
        let req = "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
    })
}

/// An S3 client for `bucket`, configured from the environment and the AWS files.
fn s3_store(bucket: &str) -> Result<Arc<dyn ObjectStore>, String> {
    let s = s3_settings()?;
    let mut b = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(s.region.unwrap_or_else(|| "us-east-1".into()))
        .with_retry(retry_config());
    let allow_http = s.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
    if let Some(e) = &s.endpoint {
        b = b.with_endpoint(e.trim_end_matches('/'));
    }
    if anonymous() {
        b = b.with_skip_signature(true);
    } else {
        match (&s.key_id, &s.secret) {
            (Some(_), None) => return Err("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not — set both".into()),
            (None, Some(_)) => return Err("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not — set both".into()),
            (None, None)
                if env("AWS_WEB_IDENTITY_TOKEN_FILE").is_none()
                    && env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_none()
                    && env("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_none()
                    && (truthy(env("AWS_EC2_METADATA_DISABLED")) || !instance_metadata_answers()) =>
            {
                return Err("no AWS credentials found — set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or pass --anon for a public bucket".into())
            }
            _ => {}
        }
        if let (Some(k), Some(v)) = (&s.key_id, &s.secret) {
            b = b.with_access_key_id(k).with_secret_access_key(v);
        }
        if let Some(t) = &s.token {
            b = b.with_token(t);
        }
        // no keys: web identity, container and instance credentials, as object_store finds them
        for (var, key) in [
            ("AWS_WEB_IDENTITY_TOKEN_FILE", object_store::aws::AmazonS3ConfigKey::WebIdentityTokenFile),
            ("AWS_ROLE_ARN", object_store::aws::AmazonS3ConfigKey::RoleArn),
            ("AWS_ROLE_SESSION_NAME", object_store::aws::AmazonS3ConfigKey::RoleSessionName),
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                object_store::aws::AmazonS3ConfigKey::ContainerCredentialsRelativeUri,
            ),
        ] {
            if let Some(v) = env(var) {
                b = b.with_config(key, v);
            }
        }
    }
    b = b.with_client_options(client_options(allow_http));
    b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>).map_err(|e| e.to_string())
}

fn http_store(url: &Url) -> Result<Arc<dyn ObjectStore>, String> {
    let base = match url.scheme {
        Scheme::Http => format!("http://{}", url.authority),
        _ => format!("https://{}", url.authority),
    };
    object_store::http::HttpBuilder::new()
        .with_url(base)
        .with_retry(retry_config())
        .with_client_options(client_options(url.scheme == Scheme::Http))
        .build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| e.to_string())
}

/// One client per bucket or host, shared by every array on it.
fn client(url: &Url) -> Result<Arc<dyn ObjectStore>, String> {
    type Clients = HashMap<(String, String), Arc<dyn ObjectStore>>;
    static CLIENTS: OnceLock<Mutex<Clients>> = OnceLock::new();
    let id = (format!("{:?}", url.scheme), url.authority.clone());
    let mut map = CLIENTS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = map.get(&id) {
        return Ok(c.clone());
    }
    let c = match url.scheme {
        Scheme::S3 => s3_store(&url.authority)?,
        _ => http_store(url)?,
    };
    map.insert(id, c.clone());
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// Errors

static UNREACHABLE: AtomicBool = AtomicBool::new(false);

/// Whether a request of this process has already failed for want of an answer (after its
/// retries): cleaning up on the same server would only wait through the retries again.
pub fn server_unreachable() -> bool {
    UNREACHABLE.load(Ordering::Relaxed)
}

/// The `<Code>` of an S3 XML error body quoted in `text`.
fn s3_code(text: &str) -> Option<&str> {
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")?;
    Some(&text[start..start + end])
}

/// One line saying what went wrong with the request for `url` and what to do.
pub fn describe(url: &Url, e: &object_store::Error) -> String {
    use object_store::Error as E;
    let text = e.to_string();
    let code = s3_code(&text);
    // the causes below object_store's message (reqwest, hyper, rustls, the resolver)
    let mut causes = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        causes.push_str(&c.to_string().to_ascii_lowercase());
        causes.push(' ');
        src = c.source();
    }
    let creds = if url.scheme == Scheme::S3 && anonymous() {
        "the bucket does not allow unsigned requests (--anon, AWS_NO_SIGN_REQUEST); drop them and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
    } else if url.scheme == Scheme::S3 {
        "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or pass --anon for a public bucket"
    } else {
        "the server refused it; check that the array is public"
    };
    let msg = match (e, code) {
        (_, Some("NoSuchBucket")) => {
            format!(
                "the bucket {} does not exist at {} — create it, or check the URL and AWS_ENDPOINT_URL",
                url.authority,
                endpoint_of(url)
            )
        }
        (_, Some("SignatureDoesNotMatch")) => format!(
            "access denied (HTTP 403: the signature does not match) — the secret key is wrong; check {}",
            keys_from()
        ),
        (_, Some("InvalidAccessKeyId")) => {
            format!("access denied (HTTP 403: unknown access key) — check {}", keys_from())
        }
        (_, Some("ExpiredToken")) => "access denied (the session token has expired) — renew AWS_SESSION_TOKEN".into(),
        (E::NotFound { .. }, _) => format!("not found — check the URL ({})", endpoint_of(url)),
        (E::PermissionDenied { .. }, c) => {
            format!("access denied (HTTP 403{}) — {creds}", c.map(|c| format!(": {c}")).unwrap_or_default())
        }
        (E::Unauthenticated { .. }, _) => format!("not authenticated (HTTP 401) — {creds}"),
        _ if text.contains("403 Forbidden") => format!("access denied (HTTP 403) — {creds}"),
        (E::NotImplemented { .. }, _) => "the server does not support this request".into(),
        _ if causes.contains("dns error") || causes.contains("failed to lookup address") => format!(
            "the host {} is not known (DNS) — check the URL{}",
            endpoint_of(url),
            if url.scheme == Scheme::S3 { " and AWS_ENDPOINT_URL" } else { "" }
        ),
        _ if causes.contains("invalidcontenttype") || causes.contains("corrupt message") => format!(
            "{} does not speak TLS — the server is plain http; write http:// instead of https://",
            endpoint_of(url)
        ),
        _ if causes.contains("certificate") => format!(
            "the TLS certificate of {} is not valid (untrusted, expired or for another host) — check the URL",
            endpoint_of(url)
        ),
        _ if text.contains("error sending request") || text.contains("connect") => {
            UNREACHABLE.store(true, Ordering::Relaxed);
            format!(
                "no answer from {}{} — is the server up? check the URL{}",
                endpoint_of(url),
                retries_of(&text),
                if url.scheme == Scheme::S3 { " and AWS_ENDPOINT_URL" } else { "" }
            )
        }
        _ if text.contains("builder error") => format!(
            "cannot send the request to {} — an http:// endpoint must be given in full in AWS_ENDPOINT_URL",
            endpoint_of(url)
        ),
        _ => {
            let short: String = text.split('<').next().unwrap_or(&text).chars().take(300).collect();
            format!(
                "{} — the storage server failed; try again, or check the server",
                short.trim().trim_end_matches(':')
            )
        }
    };
    format!("{url}: {msg}")
}

/// ", after N retries" from object_store's message.
fn retries_of(text: &str) -> String {
    text.find("after ")
        .and_then(|i| {
            let rest = &text[i..];
            rest.find(" retries").map(|j| format!(" ({})", &rest[..j + " retries".len()]))
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The store

/// A zarrs store over the objects under one URL prefix (an array).
#[derive(Debug)]
pub struct Remote {
    os: Arc<dyn ObjectStore>,
    /// The process's runtime the requests run on.
    rt: &'static tokio::runtime::Runtime,
    url: Url,
    limits: Option<ReadLimits>,
    /// Objects fetched ahead by [`Remote::prefetch`], handed out once by `get`.
    ahead: Mutex<HashMap<String, Option<Bytes>>>,
}

/// Largest object read from a store opened without limits.
const UNLIMITED: u64 = 1 << 40;

/// Metadata documents, read whatever the array's limits.
const METADATA_KEYS: [&str; 5] = ["zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"];

impl Remote {
    pub fn new(url: &Url, limits: Option<ReadLimits>) -> Result<Remote, String> {
        let os = client(url).map_err(|e| format!("{url}: cannot set up the connection: {e}"))?;
        let rt = runtime().map_err(|e| format!("{url}: {e}"))?;
        Ok(Remote { os, rt, url: url.clone(), limits, ahead: Mutex::default() })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The object's key, verbatim (`ObjPath::from` would percent-encode `~`, `%`, non-ASCII…).
    fn path(&self, key: &str) -> ObjPath {
        let full = self.url.join(key).key;
        ObjPath::parse(&full).unwrap_or_else(|_| ObjPath::from(full))
    }

    fn err(&self, key: &str, e: &object_store::Error) -> String {
        describe(&self.url.join(key), e)
    }

    fn limits_of(&self, key: &str) -> (u64, Option<&super::limits::ShardLayout>) {
        let name = key.rsplit('/').next().unwrap_or("");
        if METADATA_KEYS.contains(&name) {
            return (MAX_METADATA_BYTES, None);
        }
        match &self.limits {
            Some(l) => (l.object, l.shard.as_ref()),
            None => (UNLIMITED, None),
        }
    }

    fn check_writable(&self) -> Result<(), String> {
        if self.url.writable() {
            Ok(())
        } else {
            Err(format!("{}: arrays on http(s):// are read-only — write to s3:// or a local path", self.url))
        }
    }

    /// One GET of the whole object `key`, its size checked before its body is read.
    async fn fetch(os: Arc<dyn ObjectStore>, url: Url, path: ObjPath, max: u64) -> Result<Option<Bytes>, String> {
        count(&GETS, 1);
        let r = match os.get(&path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(describe(&url, &e)),
        };
        if r.meta.size > max && max == MAX_METADATA_BYTES {
            return Err(format!(
                "{url}: holds {} bytes, more than array metadata can — not array metadata; restore or rewrite it",
                r.meta.size
            ));
        }
        if r.meta.size > max {
            return Err(format!(
                "{url}: holds {} bytes, more than a chunk of this array can — the object is damaged or not part of the array; restore it or rewrite the array",
                r.meta.size
            ));
        }
        let bytes = r.bytes().await.map_err(|e| describe(&url, &e))?;
        count(&READ, bytes.len() as u64);
        Ok(Some(bytes))
    }

    /// Read the object `key` whole, checked: `None` when it does not exist.
    pub fn read_bytes(&self, key: &str) -> Result<Option<Bytes>, String> {
        if let Some(b) = self.ahead.lock().unwrap_or_else(|p| p.into_inner()).remove(key) {
            return Ok(b);
        }
        let (max, shard) = self.limits_of(key);
        let got = self.rt.block_on(Self::fetch(self.os.clone(), self.url.join(key), self.path(key), max))?;
        if let (Some(b), Some(layout)) = (&got, shard) {
            let len = b.len() as u64;
            match layout.index_range(len) {
                Some((start, n)) => layout
                    .check_index(&b[start as usize..(start + n) as usize], len)
                    .map_err(|m| self.bad_shard(key, &m))?,
                None => return Err(self.bad_shard(key, &format!("it holds {len} bytes, less than its index"))),
            }
        }
        Ok(got)
    }

    fn bad_shard(&self, key: &str, msg: &str) -> String {
        format!(
            "{}: not a valid shard ({msg}) — the object is damaged; restore it or rewrite the array",
            self.url.join(key)
        )
    }

    /// Fetch the objects `keys` at once, up to `parallel` requests in flight, to be handed out by
    /// the next `get` of each (a task's chunks: their requests overlap instead of queueing behind
    /// one another). Objects larger than the array's limits, and failures, are left for `get` to
    /// meet and report.
    pub fn prefetch(&self, keys: &[String], parallel: usize) {
        if keys.len() < 2 {
            return;
        }
        let jobs = keys.iter().map(|k| {
            let (max, _) = self.limits_of(k);
            let (os, url, path, k) = (self.os.clone(), self.url.join(k), self.path(k), k.clone());
            async move { (k, Self::fetch(os, url, path, max).await) }
        });
        let got: Vec<(String, Result<Option<Bytes>, String>)> =
            self.rt.block_on(futures::stream::iter(jobs).buffer_unordered(parallel.max(1)).collect());
        let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        for (k, r) in got {
            if let Ok(b) = r {
                ahead.insert(k, b);
            }
        }
    }

    /// Forget the objects of `keys` fetched ahead and not used.
    pub fn forget(&self, keys: &[String]) {
        let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            ahead.remove(k);
        }
    }

    /// What identifies the object `key` as stored (ETag, size, time): `None` when it is missing.
    pub fn version(&self, key: &str) -> Result<Option<String>, String> {
        count(&HEADS, 1);
        match self.rt.block_on(self.os.head(&self.path(key))) {
            Ok(m) => Ok(Some(format!("{:?} {} {}", m.e_tag, m.size, m.last_modified))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(key, &e)),
        }
    }

    /// Write `key` only when no object has that name yet (an S3 conditional PUT): `Ok(false)`
    /// when one exists.
    pub fn create_new(&self, key: &str, value: Bytes) -> Result<bool, String> {
        self.check_writable()?;
        count(&PUTS, 1);
        let n = value.len() as u64;
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.rt.block_on(self.os.put_opts(&self.path(key), PutPayload::from_bytes(value), opts)) {
            Ok(_) => {
                count(&WRITTEN, n);
                Ok(true)
            }
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.err(key, &e)),
        }
    }

    /// Write `key`.
    pub fn put(&self, key: &str, value: Bytes) -> Result<(), String> {
        self.check_writable()?;
        count(&PUTS, 1);
        let n = value.len() as u64;
        self.rt.block_on(self.os.put(&self.path(key), PutPayload::from_bytes(value))).map_err(|e| self.err(key, &e))?;
        count(&WRITTEN, n);
        Ok(())
    }

    /// Delete `key` (nothing to do when it does not exist).
    pub fn delete(&self, key: &str) -> Result<(), String> {
        self.check_writable()?;
        count(&DELETES, 1);
        match self.rt.block_on(self.os.delete(&self.path(key))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(key, &e)),
        }
    }

    /// The keys under `prefix` (relative to this store, `""` for all) with their sizes.
    pub fn list_sizes(&self, prefix: &str) -> Result<Vec<(String, u64)>, String> {
        count(&LISTS, 1);
        let root = self.url.join(prefix);
        let base = self.url.key.clone();
        let metas: Vec<object_store::ObjectMeta> = self
            .rt
            .block_on(
                self.os.list((!root.key.is_empty()).then(|| ObjPath::from(root.key.clone())).as_ref()).try_collect(),
            )
            .map_err(|e| describe(&root, &e))?;
        let strip = if base.is_empty() { 0 } else { base.len() + 1 };
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let full = m.location.as_ref().to_string();
                // the listing of "a/b" also has "a/bc…": keep what is under the prefix
                (base.is_empty() || full.starts_with(&format!("{base}/"))).then(|| (full[strip..].to_string(), m.size))
            })
            .collect())
    }

    /// Delete the objects `keys` (in batches where the server takes them).
    pub fn delete_many(&self, keys: &[String]) -> Result<(), String> {
        self.check_writable()?;
        count(&DELETES, keys.len() as u64);
        let paths: Vec<ObjPath> = keys.iter().map(|k| self.path(k)).collect();
        let stream = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let done: Vec<Result<ObjPath, object_store::Error>> = self.rt.block_on(self.os.delete_stream(stream).collect());
        for r in done {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(describe(&self.url, &e)),
            }
        }
        Ok(())
    }

    /// Delete every object under `prefix` of this store (`""`: all of them).
    pub fn delete_under(&self, prefix: &str) -> Result<(), String> {
        let keys: Vec<String> = self.list_sizes(prefix)?.into_iter().map(|(k, _)| k).collect();
        self.delete_many(&keys)
    }
}

fn storage_err(msg: String) -> StorageError {
    StorageError::Other(msg)
}

impl ReadableStorageTraits for Remote {
    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        self.read_bytes(key.as_str()).map_err(storage_err)
    }

    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        let k = key.as_str().to_string();
        let (_, shard) = self.limits_of(&k);
        let ranges: Vec<ByteRange> = byte_ranges.collect();
        let url = self.url.join(&k);
        let jobs = ranges.iter().map(|r| {
            let range = match *r {
                ByteRange::FromStart(o, Some(n)) => GetRange::Bounded(o..o + n),
                ByteRange::FromStart(o, None) => GetRange::Offset(o),
                ByteRange::Suffix(n) => GetRange::Suffix(n),
            };
            let (os, path, url) = (self.os.clone(), self.path(&k), url.clone());
            async move {
                count(&GETS, 1);
                let opts = GetOptions { range: Some(range), ..Default::default() };
                match os.get_opts(&path, opts).await {
                    Ok(r) => {
                        let size = r.meta.size;
                        let b = r.bytes().await.map_err(|e| describe(&url, &e))?;
                        count(&READ, b.len() as u64);
                        Ok(Some((b, size)))
                    }
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(describe(&url, &e)),
                }
            }
        });
        let got: Result<Vec<Option<(Bytes, u64)>>, String> =
            self.rt.block_on(futures::stream::iter(jobs).buffered(8).try_collect());
        let got = got.map_err(storage_err)?;
        if got.iter().any(|g| g.is_none()) {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(got.len());
        for (r, g) in ranges.iter().zip(got.into_iter().flatten()) {
            let (b, size) = g;
            if let Some(layout) = shard {
                if let (ByteRange::Suffix(n), Some((_, ilen))) = (r, layout.index_range(size)) {
                    if *n == ilen {
                        layout.check_index(&b, size).map_err(|m| storage_err(self.bad_shard(&k, &m)))?;
                    }
                }
            }
            out.push(Ok(b));
        }
        Ok(Some(Box::new(out.into_iter())))
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        count(&HEADS, 1);
        match self.rt.block_on(self.os.head(&self.path(key.as_str()))) {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_err(self.err(key.as_str(), &e))),
        }
    }

    fn supports_get_partial(&self) -> bool {
        true
    }
}

impl WritableStorageTraits for Remote {
    fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), StorageError> {
        self.put(key.as_str(), value).map_err(storage_err)
    }

    fn set_partial_many(&self, key: &StoreKey, _offset_values: OffsetBytesIterator) -> Result<(), StorageError> {
        Err(storage_err(format!(
            "{}: object storage cannot write part of an object — internal error, please report it",
            self.url.join(key.as_str())
        )))
    }

    fn erase(&self, key: &StoreKey) -> Result<(), StorageError> {
        self.delete(key.as_str()).map_err(storage_err)
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        self.delete_under(prefix.as_str()).map_err(storage_err)
    }

    fn supports_set_partial(&self) -> bool {
        false
    }
}

impl ListableStorageTraits for Remote {
    fn list(&self) -> Result<StoreKeys, StorageError> {
        self.list_prefix(&StorePrefix::root())
    }

    fn list_prefix(&self, prefix: &StorePrefix) -> Result<StoreKeys, StorageError> {
        let mut keys = self
            .list_sizes(prefix.as_str())
            .map_err(storage_err)?
            .into_iter()
            .map(|(k, _)| StoreKey::new(k))
            .collect::<Result<Vec<_>, _>>()?;
        keys.sort();
        Ok(keys)
    }

    fn list_dir(&self, prefix: &StorePrefix) -> Result<StoreKeysPrefixes, StorageError> {
        let keys = self.list_prefix(prefix)?;
        let base = prefix.as_str();
        let mut direct = vec![];
        let mut dirs = std::collections::BTreeSet::new();
        for k in keys {
            let rest = &k.as_str()[base.len()..];
            match rest.split_once('/') {
                Some((d, _)) => {
                    dirs.insert(format!("{base}{d}/"));
                }
                None => direct.push(k),
            }
        }
        let prefixes = dirs.into_iter().map(StorePrefix::new).collect::<Result<Vec<_>, _>>()?;
        Ok(StoreKeysPrefixes::new(direct, prefixes))
    }

    fn size_prefix(&self, prefix: &StorePrefix) -> Result<u64, StorageError> {
        Ok(self.list_sizes(prefix.as_str()).map_err(storage_err)?.iter().map(|(_, n)| n).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_say_why_not() {
        let p = |s: &str| parse(Path::new(s));
        assert_eq!(p("data/x.zarr"), None);
        assert_eq!(p("/abs/x.zarr"), None);
        let u = p("s3://my-bucket/a/b.zarr/").unwrap().unwrap();
        assert_eq!((u.scheme, u.authority.as_str(), u.key.as_str()), (Scheme::S3, "my-bucket", "a/b.zarr"));
        assert_eq!(u.to_string(), "s3://my-bucket/a/b.zarr");
        assert_eq!(u.join("zarr.json").to_string(), "s3://my-bucket/a/b.zarr/zarr.json");
        let h = p("https://example.org:8443/data/x.zarr").unwrap().unwrap();
        assert_eq!((h.scheme, h.authority.as_str()), (Scheme::Https, "example.org:8443"));
        assert!(!h.writable());
        assert!(p("gs://b/x").unwrap().unwrap_err().contains("s3://"));
        assert!(p("s3:///x").unwrap().unwrap_err().contains("no bucket"));
        assert!(p("s3://B_/x").unwrap().unwrap_err().contains("bucket name"));
        assert!(p("s3://bkt/../x").unwrap().unwrap_err().contains("'..'"));
        assert_eq!(p("s3://bkt").unwrap().unwrap().key, "");
    }

    #[test]
    fn s3_error_codes_are_read_from_the_body() {
        assert_eq!(s3_code("x: <?xml?><Error><Code>NoSuchBucket</Code></Error>"), Some("NoSuchBucket"));
        assert_eq!(s3_code("no body"), None);
        assert_eq!(retries_of("in 597ms, after 3 retries, max_retries: 3"), " (after 3 retries)");
    }
}
