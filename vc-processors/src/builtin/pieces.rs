//! add_pieces: fetch pieces and write them, fr32-padded, into the staged file.

use std::fs::OpenOptions;
use std::io::{self, Read};

use anyhow::{anyhow, ensure, Context, Result};
use filecoin_proofs_api::{seal, PaddedBytesAmount, PieceInfo, UnpaddedBytesAmount};

use crate::error::{permanent, retryable};
use crate::tasks::{AddPieces, Piece, PieceFile};

/// Env var holding the bearer token for piece URLs that redirect (market auth).
pub const PIECE_TOKEN_ENV: &str = "PIECE_FETCHER_TOKEN";

/// Writes every piece in order; a sector without pieces (committed capacity) gets
/// one zero piece filling it.
pub fn add_pieces(t: &AddPieces) -> Result<Vec<PieceInfo>> {
    let mut staged = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(true)
        .open(&t.staged_filepath)
        .with_context(|| {
            format!(
                "add_pieces: open staged file {}",
                t.staged_filepath.display()
            )
        })?;

    let filler;
    let pieces = if t.pieces.is_empty() {
        let size = UnpaddedBytesAmount::from(PaddedBytesAmount(u64::from(
            t.seal_proof_type.sector_size(),
        )));
        filler = [Piece {
            piece_file: PieceFile::Pledge,
            payload_size: 0,
            piece_size: size,
        }];
        &filler[..]
    } else {
        &t.pieces[..]
    };

    let mut infos = Vec::with_capacity(pieces.len());
    for (i, piece) in pieces.iter().enumerate() {
        let size = u64::from(piece.piece_size);
        ensure!(
            piece.payload_size <= size,
            "add_pieces: piece {i}: payload_size {} is larger than piece_size {size}",
            piece.payload_size
        );
        let source = open(&piece.piece_file).with_context(|| format!("add_pieces: piece {i}"))?;
        let source = source
            .take(piece.payload_size)
            .chain(io::repeat(0).take(size - piece.payload_size));
        let (info, _) =
            seal::write_and_preprocess(t.seal_proof_type, source, &mut staged, piece.piece_size)
                .with_context(|| {
                    format!(
                        "add_pieces: write piece {i} into {}",
                        t.staged_filepath.display()
                    )
                })?;
        infos.push(info);
    }
    staged.sync_all().context("add_pieces: sync staged file")?;
    Ok(infos)
}

fn open(f: &PieceFile) -> Result<Box<dyn Read>> {
    match f {
        PieceFile::Pledge => Ok(Box::new(io::repeat(0))),
        PieceFile::Local(p) => {
            let file = std::fs::File::open(p)
                .map_err(|e| permanent(anyhow!("open local piece {}: {e}", p.display())))?;
            Ok(Box::new(io::BufReader::new(file)))
        }
        PieceFile::Url(url) => fetch(url),
    }
}

/// GET without following redirects blindly: a redirect (to the market's piece
/// store) is followed once with the piece token, as damocles does.
fn fetch(url: &str) -> Result<Box<dyn Read>> {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let resp = match agent.get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(code, _)) if (400..500).contains(&code) => {
            return Err(permanent(anyhow!("GET {url}: HTTP {code}")))
        }
        Err(e) => return Err(retryable(anyhow!("GET {url}: {e}"))),
    };
    if (300..400).contains(&resp.status()) {
        let location = resp
            .header("Location")
            .ok_or_else(|| anyhow!("GET {url}: redirect without Location"))?;
        let mut req = agent
            .get(location)
            .set("X-VENUS-API-NAMESPACE", "v1.IMarket");
        if let Ok(token) = std::env::var(PIECE_TOKEN_ENV) {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
        let resp = req
            .call()
            .map_err(|e| retryable(anyhow!("GET {location} (redirected from {url}): {e}")))?;
        return Ok(Box::new(resp.into_reader()));
    }
    Ok(Box::new(resp.into_reader()))
}
