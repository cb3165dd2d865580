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

/// The shard (index, count) a server's answer (its `metadata`) names, if it names one.
pub(crate) fn served(metadata: &MetadataMap) -> Option<Result<(usize, usize), &'static str>> {
    let value = metadata.get(SHARD_HEADER)?;
    let parsed = value.to_str().ok().and_then(|text| {
        let (index, count) = text.split_once('/')?;
        Some((index.parse().ok()?, count.parse().ok()?))
    });
    Some(parsed.ok_or("its facedex-shard header is not INDEX/COUNT"))
}

/// Refuses an answer (its `metadata`) from a server that says it serves another shard than
/// `shard` of `shards`, as UNAVAILABLE: another replica of the shard may serve it.
pub(crate) fn check(shard: usize, shards: usize, metadata: &MetadataMap) -> Result<(), Status> {
    match served(metadata) {
        None => Ok(()),
        Some(Ok(served)) if served == (shard, shards) => Ok(()),
        Some(Ok((index, count))) => Err(Status::unavailable(format!(
            "it serves shard {index}/{count}, and the router lists it under shard {shard}/{shards}: fix the router's shard lists"
        ))),
        Some(Err(reason)) => Err(Status::unavailable(format!(
            "{reason}; the router lists it under shard {shard}/{shards}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served_by(value: Option<&'static str>) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        if let Some(value) = value {
            metadata.insert(SHARD_HEADER, value.parse().expect("ascii"));
        }
        metadata
    }

    #[test]
    fn a_malformed_header_is_refused_saying_so() {
        assert_eq!(served(&served_by(Some("1/2"))), Some(Ok((1, 2))));
        for header in ["1", "a/2", "1/b", "-1/2"] {
            assert!(
                served(&served_by(Some(header))).is_some_and(|parsed| parsed.is_err()),
                "{header}"
            );
            let refused = check(1, 2, &served_by(Some(header))).expect_err(header);
            assert!(refused.message().contains("not INDEX/COUNT"), "{}", refused.message());
        }
    }

    #[test]
    fn an_answer_is_taken_from_its_shard_or_a_server_naming_none() {
        assert!(check(1, 2, &served_by(Some("1/2"))).is_ok());
        assert!(check(1, 2, &served_by(None)).is_ok());
        assert_eq!(value(1, 2), "1/2");
    }

    #[test]
    fn an_answer_from_another_shard_or_shard_count_is_unavailable_saying_which() {
        for (shard, shards, header) in [(0, 2, "1/2"), (0, 2, "0/1"), (1, 3, "1/2")] {
            let refused = check(shard, shards, &served_by(Some(header))).expect_err(header);
            assert_eq!(refused.code(), tonic::Code::Unavailable);
            assert!(
                refused.message().contains(header) && refused.message().contains(&format!("{shard}/{shards}")),
                "{}",
                refused.message()
            );
        }
    }
}
