//! `chaintrigger decode`.

/// Arguments of `chaintrigger decode`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`decode` is not implemented yet")
}
