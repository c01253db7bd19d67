//! `dsk man DIR`: write the manual pages (roff, clap_mangen): dsk(1) and one per subcommand,
//! dsk-create(1), dsk-create-ones(1), … — what `make man` and `make install` put in place.

use std::path::PathBuf;

use clap::{Args, CommandFactory};

use crate::error::{Error, Result};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  dsk man pages/   # then: man -l pages/dsk-reduce.1")]
pub struct ManArgs {
    /// The directory to write dsk.1, dsk-SUBCOMMAND.1, … into (created if missing).
    pub dir: PathBuf,
}

pub fn run(a: &ManArgs) -> Result<()> {
    if a.dir.exists() && !a.dir.is_dir() {
        return Err(Error::usage("DIR", format!("{} is a file — give a directory for the pages", a.dir.display())));
    }
    std::fs::create_dir_all(&a.dir).map_err(|e| Error::io(&a.dir, "create the directory", e))?;
    // `dsk help` needs no page of its own (the SEE ALSO lists would name pages never written)
    let mut cmd = super::Cli::command()
        .disable_help_subcommand(true)
        .mut_subcommand("create", |c| c.disable_help_subcommand(true));
    cmd.build();
    let mut written = 0;
    write_pages(&cmd, "dsk", &a.dir, &mut written)?;
    eprintln!("dsk: wrote {written} manual pages in {}", a.dir.display());
    Ok(())
}

/// The page of `cmd` (named `name`, e.g. dsk-create-ones) and those of its subcommands.
fn write_pages(cmd: &clap::Command, name: &str, dir: &std::path::Path, written: &mut usize) -> Result<()> {
    // clap takes command names as &'static str: a few dozen short strings, once per process
    let page = cmd.clone().name(&*Box::leak(name.to_string().into_boxed_str()));
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .map_err(|e| Error::Internal(format!("render the manual page {name}: {e}")))?;
    let file = dir.join(format!("{name}.1"));
    std::fs::write(&file, out).map_err(|e| Error::io(&file, "write", e))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
