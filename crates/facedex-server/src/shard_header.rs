//! The `facedex-shard` response header: an indexer that serves a shard names it (`INDEX/COUNT`)
//! on every answer, and a router takes an answer only from a replica of the shard it asked.
//! A router whose shard lists name an indexer under the wrong shard (two lists swapped, one
//! indexer listed twice, an unsharded indexer among shards, a DNS name spanning shards) would
//! otherwise merge the wrong faces without a sign; with the header, such a replica is passed
//! over like one that is down, and a shard left with none is UNAVAILABLE saying why. Servers
//! that name no shard (`facedex serve`) are taken as they are.

use http::HeaderValue;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// The header's name.
pub const SHARD_HEADER: &str = "facedex-shard";

/// The layer an indexer's server adds: `shard` (`INDEX/COUNT`) on every answer, or nothing.
pub(crate) fn layer(
    shard: Option<HeaderValue>,
) -> tower::util::MapResponseLayer<
    impl Fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> + Clone,
> {
    tower::util::MapResponseLayer::new(move |mut response: http::Response<tonic::body::Body>| {
        if let Some(shard) = &shard {
            response.headers_mut().insert(SHARD_HEADER, shard.clone());
        }
        response
    })
}

/// The header value for shard `index` of `count`.
pub(crate) fn value(index: u32, count: u32) -> HeaderValue {
    // Digits and a slash: always a valid header value.
    HeaderValue::try_from(format!("{index}/{count}")).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Refuses an answer (its `metadata`) from a server that says it serves another shard than
/// `shard` of `shards`, as UNAVAILABLE: another replica of the shard may serve it.
pub(crate) fn check(shard: usize, shards: usize, metadata: &MetadataMap) -> Result<(), Status> {
    let Some(served) = metadata.get(SHARD_HEADER) else {
        return Ok(());
    };
    let expected = format!("{shard}/{shards}");
    match served.to_str() {
        Ok(served) if served == expected => Ok(()),
        Ok(served) => Err(Status::unavailable(format!(
            "it serves shard {served}, and the router lists it under shard {expected}: fix the router's shard lists"
        ))),
        Err(_) => Err(Status::unavailable(format!(
            "its {SHARD_HEADER} header is not text; the router lists it under shard {expected}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(value: Option<&'static str>) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        if let Some(value) = value {
            metadata.insert(SHARD_HEADER, value.parse().expect("ascii"));
        }
        metadata
    }

    #[test]
    fn an_answer_is_taken_from_its_shard_or_a_server_naming_none() {
        assert!(check(1, 2, &served(Some("1/2"))).is_ok());
        assert!(check(1, 2, &served(None)).is_ok());
        assert_eq!(value(1, 2), "1/2");
    }

    #[test]
    fn an_answer_from_another_shard_or_shard_count_is_unavailable_saying_which() {
        for (shard, shards, header) in [(0, 2, "1/2"), (0, 2, "0/1"), (1, 3, "1/2")] {
            let refused = check(shard, shards, &served(Some(header))).expect_err(header);
            assert_eq!(refused.code(), tonic::Code::Unavailable);
            assert!(
                refused.message().contains(header) && refused.message().contains(&format!("{shard}/{shards}")),
                "{}",
                refused.message()
            );
        }
    }
}
