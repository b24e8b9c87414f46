//! `chaintrigger demo`.

/// Arguments of `chaintrigger demo`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`demo` is not implemented yet")
}
