//! The token field of a `multipart/form-data` body (an upload form), found
//! without buffering the upload: the body is read only up to the end of the
//! token field, and what was read is handed on ahead of the rest.

use super::CsrfConfig;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use http::StatusCode;
use http_body::Body as _;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Why a multipart body could not be searched for the token.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BodyRefusal {
    /// The token field (named here) was not over within the first
    /// `max_body` bytes (given here) (413).
    TokenTooFar(String, usize),
    /// The body went over a limit set outside this layer (413).
    TooLarge,
    /// Not a well-formed `multipart/form-data` body (400).
    Malformed,
    /// The client's body failed while it was read (400).
    Unreadable,
}

impl IntoResponse for BodyRefusal {
    fn into_response(self) -> Response {
        match self {
            BodyRefusal::TokenTooFar(field, limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "Request body too large before its {field} field: put the field first in the form (it must come within the first {limit} bytes)."
                ),
            )
                .into_response(),
            BodyRefusal::TooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "Request body too large.").into_response()
            }
            BodyRefusal::Malformed => (
                StatusCode::BAD_REQUEST,
                "Bad request: malformed multipart/form-data body.",
            )
                .into_response(),
            BodyRefusal::Unreadable => {
                (StatusCode::BAD_REQUEST, "Bad request: the body could not be read.").into_response()
            }
        }
    }
}

/// Reads `body` until the first non-file part named `config.form_field` has
/// been read whole, or the body ends; refuses once `config.max_body` bytes
/// came without it. Returns that part's value (if any) and a body that
/// yields every byte of the original, in order (without its trailers).
pub(super) async fn find_token(
    mut body: Body,
    boundary: String,
    config: &CsrfConfig,
) -> Result<(Option<String>, Body), BodyRefusal> {
    let mut read = ReadSoFar {
        chunks: Vec::new(),
        bytes: 0,
        limit: config.max_body,
        over_limit: false,
        outer_limit: false,
        ended: false,
    };
    let result = {
        let stream = Recording {
            body: &mut body,
            read: &mut read,
        };
        let mut multipart = multer::Multipart::new(stream, boundary);
        search(&mut multipart, &config.form_field).await
        // `multipart` (and with it the borrow of `body`) ends here.
    };
    let token = match result {
        // Whatever was found: the body the handler would get is cut short.
        _ if read.outer_limit => return Err(BodyRefusal::TooLarge),
        Ok(Some(token)) => Some(token),
        Ok(None) | Err(_) if read.over_limit => {
            return Err(BodyRefusal::TokenTooFar(
                config.form_field.clone(),
                config.max_body,
            ))
        }
        Ok(None) => None,
        Err(multer::Error::StreamReadFailed(_)) => return Err(BodyRefusal::Unreadable),
        Err(_) => return Err(BodyRefusal::Malformed),
    };
    let seen = futures_util::stream::iter(read.chunks.into_iter().map(Ok::<_, axum::Error>));
    // A body that has ended is not polled again: not every body allows it.
    if read.ended {
        return Ok((token, Body::from_stream(seen)));
    }
    let rest = body.into_data_stream();
    Ok((
        token,
        Body::from_stream(futures_util::StreamExt::chain(seen, rest)),
    ))
}

async fn search(
    multipart: &mut multer::Multipart<'_>,
    field_name: &str,
) -> Result<Option<String>, multer::Error> {
    while let Some(field) = multipart.next_field().await? {
        // A file part is never the token, whatever its name.
        if field.name() == Some(field_name) && field.file_name().is_none() {
            let value = field.bytes().await?;
            return Ok(Some(String::from_utf8_lossy(&value).into_owned()));
        }
    }
    Ok(None)
}

/// What the search has read of the body so far.
struct ReadSoFar {
    chunks: Vec<Bytes>,
    bytes: usize,
    limit: usize,
    over_limit: bool,
    /// The body itself refused to go on: a limit outside this layer.
    outer_limit: bool,
    /// The body has ended (it must not be polled again).
    ended: bool,
}

/// The body's data as a stream for the multipart parser, every chunk also
/// kept in `read` so it can be handed on to the handler; it ends early (and
/// says so in `read.over_limit`) once `read.limit` bytes were read.
struct Recording<'a> {
    body: &'a mut Body,
    read: &'a mut ReadSoFar,
}

/// Ends the parser's stream when the body failed.
#[derive(Debug, thiserror::Error)]
#[error("request body unreadable")]
struct StopReading;

impl Stream for Recording<'_> {
    type Item = Result<Bytes, StopReading>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        // The parser reads ahead whatever is ready; past `limit` bytes it is
        // told the body ended, so the buffered prefix stays under `limit`
        // plus one network chunk. A token inside that prefix is still found.
        if this.read.ended {
            return Poll::Ready(None);
        }
        if this.read.bytes >= this.read.limit {
            // A body known to be over is not "too large before the token".
            if this.body.is_end_stream() {
                this.read.ended = true;
            } else {
                this.read.over_limit = true;
            }
            return Poll::Ready(None);
        }
        loop {
            let frame = match Pin::new(&mut *this.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.read.ended = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(error))) => {
                    // A body limit outside (tower-http's, say) is a 413 like ours.
                    if is_length_limit(&error) {
                        this.read.outer_limit = true;
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(StopReading)));
                }
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            // Trailers carry no form data.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            this.read.bytes = this.read.bytes.saturating_add(data.len());
            this.read.chunks.push(data.clone());
            return Poll::Ready(Some(Ok(data)));
        }
    }
}

/// Whether a body error is, somewhere in its chain, a length limit's.
fn is_length_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BOUNDARY: &str = "XyZ";

    fn part(name: &str, file: Option<&str>, value: &str) -> String {
        let file = file
            .map(|f| format!("; filename=\"{f}\""))
            .unwrap_or_default();
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n{value}\r\n")
    }

    fn end() -> String {
        format!("--{BOUNDARY}--\r\n")
    }

    /// A body delivered in chunks of `size` bytes, as a network would.
    fn chunked(text: &str, size: usize) -> Body {
        let chunks: Vec<Result<Bytes, axum::Error>> = text
            .as_bytes()
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    async fn run(
        text: &str,
        chunk: usize,
        max_body: usize,
    ) -> Result<(Option<String>, String), BodyRefusal> {
        let config = CsrfConfig::default().with_max_body(max_body);
        let (token, body) = find_token(chunked(text, chunk), BOUNDARY.into(), &config).await?;
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        Ok((token, String::from_utf8(bytes.to_vec()).unwrap()))
    }

    #[tokio::test]
    async fn the_token_is_found_and_the_body_handed_on_whole() {
        let text = [
            part("csrf_token", None, "tok"),
            part("note", None, "hi"),
            end(),
        ]
        .concat();
        for chunk in [1, 7, 64, 10_000] {
            let (token, body) = run(&text, chunk, 1 << 16).await.unwrap();
            assert_eq!(token.as_deref(), Some("tok"), "chunk {chunk}");
            assert_eq!(body, text, "chunk {chunk}");
        }
    }

    #[tokio::test]
    async fn an_upload_after_the_token_is_not_read_by_the_search() {
        let upload = "u".repeat(200_000);
        let text = [
            part("csrf_token", None, "tok"),
            part("file", Some("a.bin"), &upload),
            end(),
        ]
        .concat();
        // max_body is far below the upload: only the part up to the token counts.
        let (token, body) = run(&text, 4096, 1024).await.unwrap();
        assert_eq!(token.as_deref(), Some("tok"));
        assert_eq!(body, text);
    }

    #[tokio::test]
    async fn a_token_after_max_body_bytes_is_refused_with_413() {
        let text = [
            part("file", Some("a.bin"), &"u".repeat(5000)),
            part("csrf_token", None, "tok"),
            end(),
        ]
        .concat();
        assert_eq!(
            run(&text, 512, 1024).await.unwrap_err(),
            BodyRefusal::TokenTooFar("csrf_token".into(), 1024)
        );
        // Within the limit, it is found after the file.
        let (token, _) = run(&text, 512, 1 << 16).await.unwrap();
        assert_eq!(token.as_deref(), Some("tok"));
    }

    #[tokio::test]
    async fn a_file_part_named_like_the_token_is_not_the_token() {
        let text = [
            part("csrf_token", Some("t.txt"), "tok"),
            part("other", None, "x"),
            end(),
        ]
        .concat();
        let (token, body) = run(&text, 64, 1 << 16).await.unwrap();
        assert_eq!(token, None);
        assert_eq!(body, text);
    }

    #[tokio::test]
    async fn no_token_field_gives_none_and_the_whole_body() {
        let text = [part("a", None, "1"), part("b", None, "2"), end()].concat();
        let (token, body) = run(&text, 3, 1 << 16).await.unwrap();
        assert_eq!(token, None);
        assert_eq!(body, text);
    }

    #[tokio::test]
    async fn garbage_is_a_clean_400_not_a_panic() {
        for text in [
            "",
            "not multipart at all",
            "--XyZ\r\nno blank line",
            "--XyZ\r\n\r\n\r\n--XyZ--\r\n",
        ] {
            match run(text, 5, 1 << 16).await {
                Err(BodyRefusal::Malformed) | Ok((None, _)) => {}
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_body_over_an_outer_limit_is_413_not_400() {
        let text = [
            part("file", Some("a.bin"), &"u".repeat(5000)),
            part("csrf_token", None, "tok"),
            end(),
        ]
        .concat();
        let limited = http_body_util::Limited::new(chunked(&text, 512), 2048);
        let result = find_token(Body::new(limited), BOUNDARY.into(), &CsrfConfig::default()).await;
        assert_eq!(result.err(), Some(BodyRefusal::TooLarge));
    }

    #[tokio::test]
    async fn an_outer_limit_cutting_the_body_after_the_token_is_still_413() {
        // The token comes first and is found; the limit cuts the body later:
        // the handler must not get the shortened body as if it were whole.
        let text = [
            part("csrf_token", None, "tok"),
            part("file", Some("a.bin"), &"u".repeat(5000)),
            end(),
        ]
        .concat();
        let limited = http_body_util::Limited::new(chunked(&text, 4096), 4096 + 100);
        let config = CsrfConfig::default().with_max_body(1 << 16);
        let result = find_token(Body::new(limited), BOUNDARY.into(), &config).await;
        assert_eq!(result.err(), Some(BodyRefusal::TooLarge));
    }

    #[tokio::test]
    async fn a_body_that_ended_is_never_polled_again() {
        // A stream that panics if polled after its end, as `unfold` does.
        let text = [part("a", None, "1"), part("csrf_token", None, "tok"), end()].concat();
        let chunks: Vec<Bytes> = text
            .as_bytes()
            .chunks(16)
            .map(Bytes::copy_from_slice)
            .collect();
        let stream = futures_util::stream::unfold(chunks.into_iter(), |mut rest| async move {
            rest.next().map(|chunk| (Ok::<_, axum::Error>(chunk), rest))
        });
        let (token, body) = find_token(
            Body::from_stream(stream),
            BOUNDARY.into(),
            &CsrfConfig::default(),
        )
        .await
        .unwrap();
        assert_eq!(token.as_deref(), Some("tok"));
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        assert_eq!(bytes, text.as_bytes());
    }

    #[tokio::test]
    async fn a_whole_body_over_max_body_without_a_token_is_no_token_not_413() {
        let text = [part("file", Some("a.bin"), &"u".repeat(5000)), end()].concat();
        let config = CsrfConfig::default().with_max_body(1024);
        let (token, body) = find_token(Body::from(text.clone()), BOUNDARY.into(), &config)
            .await
            .unwrap();
        assert_eq!(token, None);
        assert_eq!(
            axum::body::to_bytes(body, usize::MAX).await.unwrap(),
            text.as_bytes()
        );
    }

    #[tokio::test]
    async fn a_failing_body_is_unreadable() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from(format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n"
            ))),
            Err(std::io::Error::other("reset")),
        ];
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let result = find_token(body, BOUNDARY.into(), &CsrfConfig::default()).await;
        assert_eq!(result.err(), Some(BodyRefusal::Unreadable));
    }

    proptest! {
        // Whatever the bytes, their chunking and the limit: no panic, and a
        // body handed on is the body that came, byte for byte.
        #[test]
        fn never_panics_and_never_changes_the_body(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "--XyZ\r\n", "--XyZ--\r\n", "\r\n", "\r\n\r\n", "--XyZ",
                    "Content-Disposition: form-data; name=\"csrf_token\"",
                    "Content-Disposition: form-data; name=\"f\"; filename=\"a\"",
                    "Content-Type: text/plain", "tok", "\u{e9}", "\0", "; name=", "\"",
                ]),
                0..40,
            ),
            chunk in 1usize..64,
            limit in 0usize..400,
        ) {
            let text = pieces.concat();
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let result = runtime.block_on(run(&text, chunk, limit));
            if let Ok((_, body)) = result {
                prop_assert_eq!(body, text);
            }
        }
    }
}
