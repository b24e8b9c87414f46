//! `chaintrigger check-config`.

/// Arguments of `chaintrigger check-config`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`check-config` is not implemented yet")
}
