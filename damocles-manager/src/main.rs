//! `damocles-manager`: the site's sector manager. Not built yet: the manager
//! (RPC for workers, sector state, devnet chain, PoSt) is the next milestone.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "damocles-manager",
    version,
    about = "damocles sector manager (not implemented yet)",
    long_about = "damocles sector manager.\n\nNot implemented yet: this release ships the \
processor protocol, the builtin processors and `damocles-worker processor <stage>`. \
The manager daemon is the next milestone."
)]
struct Cli {}

fn main() {
    Cli::parse();
    eprintln!("damocles-manager is not implemented yet; see `damocles-manager --help`");
    std::process::exit(2);
}
