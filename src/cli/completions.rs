//! `dsk completions SHELL`: the shell's completion script for dsk (clap_complete), on stdout.

use clap::{Args, CommandFactory};

use crate::error::Result;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  dsk completions bash > dsk.bash\n  dsk completions zsh > _dsk\n  dsk completions fish > dsk.fish"
)]
pub struct CompletionsArgs {
    /// The shell: bash (source the script, or put it in /etc/bash_completion.d/), zsh (a file
    /// named _dsk in a directory of $fpath), fish (~/.config/fish/completions/dsk.fish),
    /// powershell or elvish.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn run(a: &CompletionsArgs) -> Result<()> {
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut super::Cli::command(), "dsk", &mut out);
    crate::write_stdout(&out)
}
