//! `chaintrigger peersim`.

/// Arguments of `chaintrigger peersim`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`peersim` is not implemented yet")
}
