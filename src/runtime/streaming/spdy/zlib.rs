//! The compression contexts for SPDY/3 name/value header blocks.
//!
//! SPDY/3 compresses every header block of one direction of a connection with a single zlib
//! stream primed with [`DICTIONARY`] and sync-flushed at the end of each block, so each side
//! keeps one [`HeaderCompressor`] for what it sends and one [`HeaderDecompressor`] for what it
//! receives, for the life of the connection. Frames must go through them in wire order.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::{DICTIONARY, DICTIONARY_ID};

/// The largest header block berth accepts once inflated; kubectl's are a few dozen bytes.
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// What went wrong inside a header block's zlib stream.
#[derive(Debug, thiserror::Error)]
pub enum ZlibError {
    #[error("header block compression failed: {0}")]
    Compress(String),
    #[error("header block decompression failed: {0}")]
    Decompress(String),
    #[error("header block names zlib dictionary {found:#010x}, SPDY/3's is {DICTIONARY_ID:#010x}")]
    WrongDictionary { found: u32 },
    #[error("header block inflates past {MAX_HEADER_BLOCK} bytes")]
    TooLarge,
}

/// The sending side's zlib stream.
pub struct HeaderCompressor {
    z: Compress,
}

impl std::fmt::Debug for HeaderCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderCompressor")
            .field("total_out", &self.z.total_out())
            .finish()
    }
}

impl HeaderCompressor {
    pub fn new() -> Result<Self, ZlibError> {
        // Level 9 as spdystream uses; any level inflates the same.
        let mut z = Compress::new(Compression::best(), true);
        z.set_dictionary(DICTIONARY)
            .map_err(|e| ZlibError::Compress(e.to_string()))?;
        Ok(Self { z })
    }

    /// Compresses one header block and sync-flushes, so the peer can inflate it alone.
    pub fn compress(&mut self, block: &[u8]) -> Result<Vec<u8>, ZlibError> {
        let mut out = Vec::with_capacity(block.len() / 2 + 64);
        let mut consumed = 0usize;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let before_in = self.z.total_in();
            self.z
                .compress_vec(&block[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| ZlibError::Compress(e.to_string()))?;
            consumed += (self.z.total_in() - before_in) as usize;
            // A sync flush is complete once input is used up and zlib left output room free.
            if consumed == block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The receiving side's zlib stream.
pub struct HeaderDecompressor {
    z: Decompress,
}

impl std::fmt::Debug for HeaderDecompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderDecompressor")
            .field("total_in", &self.z.total_in())
            .finish()
    }
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecompressor {
    pub fn new() -> Self {
        Self {
            z: Decompress::new(true),
        }
    }

    /// Inflates one frame's compressed header block.
    pub fn decompress(&mut self, compressed: &[u8]) -> Result<Vec<u8>, ZlibError> {
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        let mut consumed = 0usize;
        loop {
            if out.capacity() - out.len() < 64 {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(ZlibError::TooLarge);
                }
                out.reserve(out.len().max(256));
            }
            let before_in = self.z.total_in();
            let before_out = out.len();
            match self
                .z
                .decompress_vec(&compressed[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => {
                    return Err(ZlibError::Decompress(
                        "zlib stream ended inside a SPDY session".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(id) if id == DICTIONARY_ID => {
                        self.z
                            .set_dictionary(DICTIONARY)
                            .map_err(|e| ZlibError::Decompress(e.to_string()))?;
                    }
                    Some(found) => return Err(ZlibError::WrongDictionary { found }),
                    None => return Err(ZlibError::Decompress(e.to_string())),
                },
            }
            consumed += (self.z.total_in() - before_in) as usize;
            if out.len() > MAX_HEADER_BLOCK {
                return Err(ZlibError::TooLarge);
            }
            let progressed = self.z.total_in() != before_in || out.len() != before_out;
            if consumed == compressed.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if !progressed && consumed < compressed.len() && out.len() < out.capacity() {
                return Err(ZlibError::Decompress("zlib made no progress".into()));
            }
        }
    }
}
