//! Shell completions and man pages, generated from the command line's clap definition (which
//! `main.rs` owns and hands in), so that what is installed always describes the binary beside
//! it. It must not write files: callers decide where the text goes.

use std::io::Write;

use clap::Command;
use clap_complete::Shell;

/// The name completions complete and man pages are titled by, whatever the binary is called.
const BIN: &str = "sinkhole";

/// Writes the completion script for `shell` to `out`.
pub fn completion(shell: Shell, command: &Command, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut command.clone(), BIN, out);
}

/// The completion script for `shell`, as bytes.
pub fn completion_bytes(shell: Shell, command: &Command) -> Vec<u8> {
    let mut out = Vec::new();
    completion(shell, command, &mut out);
    out
}

/// One man page: its file name (`sinkhole-run.1`) and its roff text.
#[derive(Debug)]
pub struct ManPage {
    /// The file name, section included.
    pub file_name: String,
    /// The page, in roff.
    pub text: Vec<u8>,
}

/// The man pages: `sinkhole.1` first, then one per command that `--help` shows (hidden ones
/// have none), named `sinkhole-COMMAND.1` as `man sinkhole-run` expects.
pub fn man_pages(command: &Command) -> std::io::Result<Vec<ManPage>> {
    // `help` is clap's own and says nothing a page should.
    let mut command = command.clone().name(BIN).bin_name(BIN).disable_help_subcommand(true);
    // Building gives each command its display name (`sinkhole-run`), which titles its page.
    command.build();
    let mut pages = Vec::new();
    render(&command, &mut pages)?;
    Ok(pages)
}

fn render(command: &Command, pages: &mut Vec<ManPage>) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(command.clone()).manual("sinkhole manual");
    let mut text = Vec::new();
    man.render(&mut text)?;
    pages.push(ManPage {
        file_name: man.get_filename(),
        text,
    });
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        render(sub, pages)?;
    }
    Ok(())
}
