//! `chaintrigger decode`: raw `common.Block` files -> every event of each block as JSON lines on stdout.
//!
//! The events are rendered as the channel's Fabric generation renders them: `--rendering` when given, else the
//! rendering of the newest config block among the inputs (a first pass reads them for it), else v2.5 (with a
//! note on stderr). Each block's data hash is checked, and consecutive inputs must chain; a block that fails is
//! reported and still printed.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::events::{ExtractOptions, Rendering, extract};
use crate::fabric::decode::{Block, BlockDecoder};

/// Arguments of `chaintrigger decode`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `instance_id` written into every envelope.
    #[arg(long, default_value = "chaintrigger")]
    pub instance_id: String,
    /// Also print Contract events of transactions the peer marked invalid (or did not validate).
    #[arg(long)]
    pub include_invalid: bool,
    /// Render `content.data` as Fabric `v2.5`'s configtxlator (empty bytes are `null`) or `v3`'s (`""`).
    /// Default: the rendering of the newest config block among the files (`v3` when its channel configuration
    /// has the `V3_0` capability), else `v2.5`.
    #[arg(long, value_name = "v2.5|v3")]
    pub rendering: Option<Rendering>,
    /// Files holding one serialized `common.Block` each (as `peer channel fetch` writes them).
    #[arg(required = true, value_name = "BLOCK_FILE")]
    pub files: Vec<PathBuf>,
}

/// Decodes every file in order; a bad file is reported on stderr and the others are still printed. Fails at
/// the end if any file (or any transaction in it) could not be decoded, or a block does not verify.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let rendering = match args.rendering {
        Some(rendering) => rendering,
        None => rendering_of_inputs(&args.files).await,
    };
    let options = ExtractOptions {
        instance_id: args.instance_id,
        include_invalid: args.include_invalid,
        rendering,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = 0usize;
    let mut decoder = BlockDecoder::new();
    let mut previous: Option<Block> = None;
    for file in &args.files {
        let Some(block) = read_block(&mut decoder, file).await else {
            failed += 1;
            previous = None;
            continue;
        };
        let mut problems: Vec<String> = block.errors().map(ToString::to_string).collect();
        if let Err(error) = block.verify_data_hash() {
            problems.push(error.to_string());
        }
        if let Some(previous) = previous
            .as_ref()
            .filter(|p| p.number.checked_add(1) == Some(block.number))
            && let Err(error) = block.verify_follows(previous)
        {
            problems.push(error.to_string());
        }
        for problem in &problems {
            eprintln!("error: {}: {problem}", file.display());
        }
        failed += usize::from(!problems.is_empty());
        for event in extract(&block, &options) {
            serde_json::to_writer(&mut out, event.envelope()).context("writing to stdout")?;
            out.write_all(b"\n").context("writing to stdout")?;
        }
        previous = Some(block);
    }
    out.flush().context("writing to stdout")?;
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} block files could not be fully decoded or verified",
            args.files.len()
        );
    }
    Ok(())
}

/// Reads and decodes one file, reporting why it cannot on stderr.
async fn read_block(decoder: &mut BlockDecoder, file: &Path) -> Option<Block> {
    let raw = match tokio::fs::read(file).await {
        Ok(raw) => raw,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return None;
        }
    };
    match decoder.decode_bytes(raw.into()) {
        Ok(block) => Some(block),
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            None
        }
    }
}

/// The rendering of the newest config block among `files` (unreadable files are left to the second pass to
/// report); v2.5 with a note when there is none.
pub async fn rendering_of_inputs(files: &[PathBuf]) -> Rendering {
    let mut decoder = BlockDecoder::new();
    let mut newest: Option<(u64, Rendering)> = None;
    for file in files {
        let Ok(raw) = tokio::fs::read(file).await else {
            continue;
        };
        let Ok(block) = decoder.decode_bytes(raw.into()) else {
            continue;
        };
        if let Some(config) = block.config()
            && newest.is_none_or(|(number, _)| block.number >= number)
        {
            newest = Some((block.number, Rendering::of_config(config)));
        }
    }
    match newest {
        Some((_, rendering)) => rendering,
        None => {
            eprintln!(
                "note: no config block among the inputs and no --rendering: rendering as Fabric v2.5's configtxlator \
                 (empty bytes are null); pass --rendering v3 for a channel with the V3_0 capability"
            );
            Rendering::default()
        }
    }
}
