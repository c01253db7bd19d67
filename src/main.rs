//! The `dsk` binary: parse the command line, run it, turn the outcome into an exit code.

fn main() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("dsk: internal error (this is a bug in dsk, please report it): {info}");
    }));
    let cli = match dsk::cli::Cli::parse_args() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                std::process::exit(if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand { 2 } else { 0 });
            }
            eprintln!("dsk: error: {}", usage_error_line(&e.to_string()));
            std::process::exit(2);
        }
    };
    // the command runs on a thread with a large stack (see dsk::STACK_BYTES)
    let run = std::thread::Builder::new().name("dsk".into()).stack_size(dsk::STACK_BYTES).spawn(move || dsk::run(cli));
    let outcome = match run {
        Ok(handle) => handle.join().unwrap_or_else(|_| Err(dsk::Error::Internal("the command panicked".into()))),
        Err(e) => Err(dsk::Error::Internal(format!("cannot start the main thread: {e}"))),
    };
    let code = match outcome {
        Ok(()) => 0,
        Err(dsk::Error::BrokenPipe) => 0,
        Err(e) => {
            eprintln!("dsk: error: {e}");
            e.exit_code()
        }
    };
    // --dashboard-linger: after the summary or the error, not before
    dsk::report::dashboard::linger();
    std::process::exit(code);
}

/// clap's message on one line: what is wrong (with the details clap puts on the following lines,
/// such as the missing arguments or the possible values) and the help to read.
fn usage_error_line(text: &str) -> String {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("invalid arguments").trim_start_matches("error: ").trim_end_matches(':');
    let mut details = vec![];
    for line in lines {
        let l = line.trim();
        if l.starts_with("Usage: ") {
            break;
        }
        // clap's "tip: a similar subcommand exists: 'random'" becomes "did you mean 'random'?"
        if let Some(tip) = l.strip_prefix("tip:") {
            if let Some((_, names)) = tip.split_once("exists: ").or_else(|| tip.split_once("exist: ")) {
                let names = match names.rsplit_once(", ") {
                    Some((a, b)) => format!("{a} or {b}"),
                    None => names.to_string(),
                };
                details.push(format!("did you mean {names}?"));
            }
            continue;
        }
        if !l.is_empty() && !l.starts_with("For more information") {
            details.push(l.to_string());
        }
    }
    let what = if details.is_empty() { first.to_string() } else { format!("{first}: {}", details.join(", ")) };
    // the (sub)commands named on the command line: their --help is the one to read
    let mut cmd = <dsk::cli::Cli as clap::CommandFactory>::command();
    let mut path = vec!["dsk".to_string()];
    for arg in std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()) {
        match cmd.find_subcommand(&arg) {
            Some(sub) => {
                path.push(arg);
                cmd = sub.clone();
            }
            None if arg.starts_with('-') => continue,
            None => {}
        }
    }
    format!("{what} — see '{} --help'", path.join(" "))
}
