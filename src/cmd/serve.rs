//! `chaintrigger serve`.

/// Arguments of `chaintrigger serve`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`serve` is not implemented yet")
}
