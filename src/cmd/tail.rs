//! `chaintrigger tail`.

/// Arguments of `chaintrigger tail`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`tail` is not implemented yet")
}
