//! The helper protocol's framing: each message is a 4-byte big-endian
//! length and that many bytes of JSON. A frame longer than the reader's
//! bound is refused before its body is read, so a peer cannot make the
//! other side allocate what it names.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The most a request may hold: the web's own body limit
/// ([`crate::router::BODY_LIMIT`]) and room for the envelope.
pub const MAX_REQUEST: usize = crate::router::BODY_LIMIT + 16 * 1024;

/// The most a response may hold (the helper is the trusted side; the
/// bound is against a broken one): every user of a large node, listed.
pub const MAX_RESPONSE: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    #[error("the connection was closed")]
    Closed,
    #[error("a frame of {size} bytes is over the bound of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("the message is not what the protocol says: {0}")]
    Malformed(serde_json::Error),
    #[error("cannot read or write the socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame's bytes, refusing one over `max`.
pub async fn read_bytes<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut length = [0u8; 4];
    match reader.read_exact(&mut length).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let size = u32::from_be_bytes(length) as usize;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    let mut body = vec![0u8; size];
    reader.read_exact(&mut body).await?;
    Ok(body)
}

/// Reads one frame as `T`.
pub async fn read<T: DeserializeOwned, R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<T, FrameError> {
    let body = read_bytes(reader, max).await?;
    serde_json::from_slice(&body).map_err(FrameError::Malformed)
}

/// Writes `message` as one frame, refusing one over `max` (nothing is
/// written then).
pub async fn write<T: Serialize, W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &T,
    max: usize,
) -> Result<(), FrameError> {
    let body = serde_json::to_vec(message).map_err(FrameError::Malformed)?;
    if body.len() > max {
        return Err(FrameError::TooLarge {
            size: body.len(),
            max,
        });
    }
    let size = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        size: body.len(),
        max,
    })?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&size.to_be_bytes());
    frame.extend_from_slice(&body);
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Ping {
        n: u32,
    }

    #[tokio::test]
    async fn a_frame_goes_through_whole() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write(&mut a, &Ping { n: 7 }, 100).await.unwrap();
        let got: Ping = read(&mut b, 100).await.unwrap();
        assert_eq!(got, Ping { n: 7 });
    }

    #[tokio::test]
    async fn a_length_over_the_bound_is_refused_before_the_body() {
        let (mut a, mut b) = tokio::io::duplex(64);
        // Claims 4 GiB and sends nothing more: the reader must not wait
        // for it, nor allocate it.
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let err = read_bytes(&mut b, 1024).await.unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { size, max: 1024 } if size == u32::MAX as usize)
        );
    }

    #[tokio::test]
    async fn a_message_over_the_bound_is_not_written() {
        let (mut a, _b) = tokio::io::duplex(64);
        let err = write(&mut a, &"x".repeat(200), 100).await.unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { max: 100, .. }));
    }

    #[tokio::test]
    async fn garbage_and_a_closed_peer_are_told_apart() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&3u32.to_be_bytes()).await.unwrap();
        a.write_all(b"{x}").await.unwrap();
        assert!(matches!(
            read::<Ping, _>(&mut b, 100).await,
            Err(FrameError::Malformed(_))
        ));
        drop(a);
        assert!(matches!(
            read::<Ping, _>(&mut b, 100).await,
            Err(FrameError::Closed)
        ));
    }
}
