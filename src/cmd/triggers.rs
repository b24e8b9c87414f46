//! `chaintrigger triggers`.

/// Arguments of `chaintrigger triggers`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`triggers` is not implemented yet")
}
