//! The `dsk` binary: parse the command line, run it, turn the outcome into an exit code.

use clap::Parser;

fn main() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("dsk: internal error (this is a bug in dsk, please report it): {info}");
    }));
    let cli = match dsk::cli::Cli::try_parse() {
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
            // clap's message, on one line: what is wrong and where to look
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            eprintln!("dsk: error: {first} — see 'dsk --help' or 'dsk <command> --help'");
            std::process::exit(2);
        }
    };
    let code = match dsk::run(cli) {
        Ok(()) => 0,
        Err(dsk::Error::BrokenPipe) => 0,
        Err(e) => {
            eprintln!("dsk: error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
