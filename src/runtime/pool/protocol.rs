//! Frames between the pool and a shim (`shim/worker.py`, `shim/worker.js`), over two dedicated pipes: fd 3
//! carries requests to the shim, fd 4 carries responses back. The handler's stdout/stderr stay free for its log.
//!
//! A frame is a 4-byte big-endian length of what follows, one kind byte, then the body:
//! - to the shim: `S` setup (JSON, once), `N` initialize (the request id), `I` invoke (u16 big-endian request-id
//!   length, the request id, the event), `P` HTTP invoke (u16 big-endian request-id length, the request id, u32
//!   big-endian length of the request head, the head (JSON: method, path, url, queries, headers, clientIP), the
//!   request body), answered like `I`, with a success body that is itself an HTTP answer (see [`split_http_answer`]);
//! - from the shim: `R` ready (empty, once, after the setup frame: an exit before it is a failed start), `O`
//!   success (raw body), `H` handled error (JSON), `U` unhandled error (JSON), `X` unhandled error after which the
//!   instance must not be reused (Node's uncaught exception).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Responses larger than this are refused: the runtime would otherwise buffer whatever a handler produces.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// What a shim answered to an initialize or invoke frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The shim read its setup and waits for requests (sent once, before any answer).
    Ready,
    /// The handler (or initializer) returned; the converted body.
    Success(Bytes),
    /// Node `callback(err)`: the JSON error body.
    Handled(Bytes),
    /// An exception: the JSON error body.
    Unhandled(Bytes),
    /// An exception that left the process unusable: the JSON error body; the instance is replaced.
    Fatal(Bytes),
}

/// A shim broke the framing rules; the instance is replaced.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// The length prefix is over [`MAX_RESPONSE_BYTES`].
    #[error(
        "the function's response is {0} bytes, more than the {MAX_RESPONSE_BYTES} bytes allowed"
    )]
    TooLarge(usize),
    /// A frame without a kind byte, or with an unknown one.
    #[error("unknown response frame kind {0:?} from the language shim")]
    UnknownKind(Option<u8>),
}

/// The setup frame: everything the shim needs to build `context` and find the handler.
pub fn setup_frame(setup_json: &[u8]) -> Bytes {
    frame(b'S', &[setup_json])
}

/// The initialize frame for the invocation `request_id`.
pub fn initialize_frame(request_id: &str) -> Bytes {
    frame(b'N', &[request_id.as_bytes()])
}

/// The invoke frame. Request ids longer than 65535 bytes are cut (the API side's ids are far shorter).
pub fn invoke_frame(request_id: &str, payload: &[u8]) -> Bytes {
    let id = &request_id.as_bytes()[..request_id.len().min(usize::from(u16::MAX))];
    let id_length = u16::try_from(id.len())
        .expect("the request id was cut to u16::MAX bytes above")
        .to_be_bytes();
    frame(b'I', &[&id_length, id, payload])
}

/// The HTTP invoke frame: an HTTP trigger's request, `head` (JSON) and `body`. Request ids are cut as in
/// [`invoke_frame`].
pub fn http_frame(request_id: &str, head: &[u8], body: &[u8]) -> Bytes {
    let id = &request_id.as_bytes()[..request_id.len().min(usize::from(u16::MAX))];
    let id_length = u16::try_from(id.len())
        .expect("the request id was cut to u16::MAX bytes above")
        .to_be_bytes();
    let head_length = u32::try_from(head.len()).unwrap_or(u32::MAX).to_be_bytes();
    frame(b'P', &[&id_length, id, &head_length, head, body])
}

/// The parts of a shim's success answer to an HTTP invoke frame: u32 big-endian length of the head, the head
/// (JSON: `status` and `headers`, or `error` when the handler answered wrongly), then the response body.
/// `None` when the answer is too short for the length it announces.
pub fn split_http_answer(mut answer: Bytes) -> Option<(Bytes, Bytes)> {
    if answer.len() < 4 {
        return None;
    }
    let length = answer.get_u32() as usize;
    if answer.len() < length {
        return None;
    }
    let head = answer.split_to(length);
    Some((head, answer))
}

fn frame(kind: u8, parts: &[&[u8]]) -> Bytes {
    let body_length: usize = parts.iter().map(|part| part.len()).sum();
    let length = u32::try_from(body_length + 1).unwrap_or(u32::MAX);
    let mut buf = BytesMut::with_capacity(5 + body_length);
    buf.put_u32(length);
    buf.put_u8(kind);
    for part in parts {
        buf.put_slice(part);
    }
    buf.freeze()
}

/// Takes one complete response frame off the front of `buf`, or `None` if more bytes are needed.
pub fn take_response(buf: &mut BytesMut) -> Result<Option<Response>, ProtocolError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let length = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if length > MAX_RESPONSE_BYTES {
        return Err(ProtocolError::TooLarge(length));
    }
    if buf.len() < 4 + length {
        buf.reserve(4 + length - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let mut frame = buf.split_to(length).freeze();
    if frame.is_empty() {
        return Err(ProtocolError::UnknownKind(None));
    }
    let kind = frame.get_u8();
    match kind {
        b'R' => Ok(Some(Response::Ready)),
        b'O' => Ok(Some(Response::Success(frame))),
        b'H' => Ok(Some(Response::Handled(frame))),
        b'U' => Ok(Some(Response::Unhandled(frame))),
        b'X' => Ok(Some(Response::Fatal(frame))),
        other => Err(ProtocolError::UnknownKind(Some(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoke_frame_layout() {
        let frame = invoke_frame("r1", b"{}");
        assert_eq!(&frame[..], b"\0\0\0\x07I\0\x02r1{}");
    }

    #[test]
    fn http_frame_layout_and_answer() {
        let frame = http_frame("r1", b"{}", b"body");
        assert_eq!(&frame[..], b"\0\0\0\x0fP\0\x02r1\0\0\0\x02{}body");
        let (head, body) =
            split_http_answer(Bytes::from_static(b"\0\0\0\x02{}hello")).expect("an answer");
        assert_eq!((&head[..], &body[..]), (&b"{}"[..], &b"hello"[..]));
        assert_eq!(split_http_answer(Bytes::from_static(b"\0\0\0\x09{}")), None);
        assert_eq!(split_http_answer(Bytes::from_static(b"\0\0")), None);
    }

    #[test]
    fn responses_arrive_in_pieces() {
        let mut buf = BytesMut::new();
        buf.put_slice(b"\0\0\0\x03Oh");
        assert_eq!(take_response(&mut buf), Ok(None));
        buf.put_slice(b"i\0\0\0\x01U");
        assert_eq!(
            take_response(&mut buf),
            Ok(Some(Response::Success(Bytes::from_static(b"hi"))))
        );
        assert_eq!(
            take_response(&mut buf),
            Ok(Some(Response::Unhandled(Bytes::new())))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn bad_frames_are_refused() {
        let mut empty = BytesMut::from(&b"\0\0\0\0"[..]);
        assert_eq!(
            take_response(&mut empty),
            Err(ProtocolError::UnknownKind(None))
        );
        let mut unknown = BytesMut::from(&b"\0\0\0\x01Z"[..]);
        assert_eq!(
            take_response(&mut unknown),
            Err(ProtocolError::UnknownKind(Some(b'Z')))
        );
        let mut huge = BytesMut::from(&b"\xff\xff\xff\xff"[..]);
        assert_eq!(
            take_response(&mut huge),
            Err(ProtocolError::TooLarge(0xffff_ffff))
        );
    }
}
