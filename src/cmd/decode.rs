//! `chaintrigger decode`: raw `common.Block` files -> every event of each block as JSON lines on stdout.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::events::{ExtractOptions, extract};
use crate::fabric::decode::BlockDecoder;

/// Arguments of `chaintrigger decode`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `instance_id` written into every envelope.
    #[arg(long, default_value = "chaintrigger")]
    pub instance_id: String,
    /// Also print Contract events of transactions the peer marked invalid.
    #[arg(long)]
    pub include_invalid: bool,
    /// Files holding one serialized `common.Block` each (as `peer channel fetch` writes them).
    #[arg(required = true, value_name = "BLOCK_FILE")]
    pub files: Vec<PathBuf>,
}

/// Decodes every file in order; a bad file is reported on stderr and the others are still printed. Fails at
/// the end if any file (or any transaction in it) could not be decoded.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let options = ExtractOptions {
        instance_id: args.instance_id,
        include_invalid: args.include_invalid,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = 0usize;
    let mut decoder = BlockDecoder::new();
    for file in &args.files {
        let raw = match tokio::fs::read(file).await {
            Ok(raw) => raw,
            Err(e) => {
                eprintln!("error: {}: {e}", file.display());
                failed += 1;
                continue;
            }
        };
        let block = match decoder.decode_bytes(raw.into()) {
            Ok(block) => block,
            Err(e) => {
                eprintln!("error: {}: {e}", file.display());
                failed += 1;
                continue;
            }
        };
        let mut file_failed = false;
        for error in block.errors() {
            eprintln!("error: {}: {error}", file.display());
            file_failed = true;
        }
        failed += usize::from(file_failed);
        for event in extract(&block, &options) {
            serde_json::to_writer(&mut out, event.envelope()).context("writing to stdout")?;
            out.write_all(b"\n").context("writing to stdout")?;
        }
    }
    out.flush().context("writing to stdout")?;
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} block files could not be fully decoded",
            args.files.len()
        );
    }
    Ok(())
}
