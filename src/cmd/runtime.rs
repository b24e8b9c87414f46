//! `chaintrigger runtime`.

/// Arguments of `chaintrigger runtime`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`runtime` is not implemented yet")
}
