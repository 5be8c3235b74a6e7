//! Reading packet captures (pcap and pcapng) for replay.

use std::{fs::File, io::Read, path::Path};

use pcap_file::{
    DataLink,
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader},
};
use thiserror::Error;

/// Errors reading a capture.
#[derive(Debug, Error)]
pub enum CaptureError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The capture's path.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not a pcap or pcapng capture, or is corrupt.
    #[error("{path}: not a valid pcap or pcapng capture: {source}")]
    Format {
        /// The capture's path.
        path: String,
        /// What the parser said.
        source: pcap_file::PcapError,
    },
    /// A packet's link layer is not Ethernet.
    #[error(
        "{path}: packet {index} has link type {link:?}; only Ethernet captures can be replayed"
    )]
    LinkType {
        /// The capture's path.
        path: String,
        /// Index of the packet, from 0.
        index: usize,
        /// Its link type.
        link: DataLink,
    },
    /// A pcapng packet names an interface the file never described.
    #[error("{path}: packet {index} refers to undescribed interface {interface}")]
    UnknownInterface {
        /// The capture's path.
        path: String,
        /// Index of the packet, from 0.
        index: usize,
        /// The interface id.
        interface: u32,
    },
}

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The bytes captured, from the Ethernet header on.
    pub data: Vec<u8>,
    /// Length on the wire; larger than `data.len()` when the capture cut the frame.
    pub original_len: u32,
}

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Reads every frame of a pcap or pcapng file, telling the two apart by their magic number.
///
/// # Errors
/// A [`CaptureError`] naming the file (and the packet, for per-packet problems).
pub fn read(path: &Path) -> Result<Vec<Frame>, CaptureError> {
    let name = path.display().to_string();
    let io = |source| CaptureError::Io {
        path: name.clone(),
        source,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io)?;
    if bytes.starts_with(&PCAPNG_MAGIC) {
        read_pcapng(&bytes, &name)
    } else {
        read_pcap(&bytes, &name)
    }
}

fn read_pcap(bytes: &[u8], path: &str) -> Result<Vec<Frame>, CaptureError> {
    let format = |source| CaptureError::Format {
        path: path.to_string(),
        source,
    };
    let mut reader = PcapReader::new(bytes).map_err(format)?;
    let link = reader.header().datalink;
    let mut frames = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.map_err(format)?;
        if link != DataLink::ETHERNET {
            return Err(CaptureError::LinkType {
                path: path.to_string(),
                index: frames.len(),
                link,
            });
        }
        frames.push(Frame {
            data: packet.data.into_owned(),
            original_len: packet.orig_len,
        });
    }
    Ok(frames)
}

fn read_pcapng(bytes: &[u8], path: &str) -> Result<Vec<Frame>, CaptureError> {
    let format = |source| CaptureError::Format {
        path: path.to_string(),
        source,
    };
    let mut reader = PcapNgReader::new(bytes).map_err(format)?;
    let mut frames = Vec::new();
    while let Some(block) = reader.next_block() {
        let (interface, frame) = match block.map_err(format)? {
            Block::EnhancedPacket(p) => (
                p.interface_id,
                Frame {
                    data: p.data.into_owned(),
                    original_len: p.original_len,
                },
            ),
            Block::SimplePacket(p) => (
                0,
                Frame {
                    data: p.data.into_owned(),
                    original_len: p.original_len,
                },
            ),
            _ => continue,
        };
        let index = frames.len();
        let link = reader
            .interfaces()
            .get(interface as usize)
            .map(|i| i.linktype)
            .ok_or_else(|| CaptureError::UnknownInterface {
                path: path.to_string(),
                index,
                interface,
            })?;
        if link != DataLink::ETHERNET {
            return Err(CaptureError::LinkType {
                path: path.to_string(),
                index,
                link,
            });
        }
        frames.push(frame);
    }
    Ok(frames)
}
