//! The protobuf codec of etcd's API services (set in build.rs): prost, with
//! grpc-go's words for a request that does not decode - INTERNAL "grpc: error
//! unmarshalling request: ..." - where tonic's ProstCodec says "failed to
//! decode Protobuf message: ...". The detail after the prefix is prost's
//! (gogoproto, in etcd, words its errors differently).

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// What prost puts before every decode error.
const PROST_PREFIX: &str = "failed to decode Protobuf message: ";

#[derive(Debug)]
pub struct EtcdCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for EtcdCodec<T, U> {
    fn default() -> Self {
        EtcdCodec(PhantomData)
    }
}

impl<T, U> Codec for EtcdCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = EtcdEncoder<T>;
    type Decoder = EtcdDecoder<U>;

    fn encoder(&mut self) -> EtcdEncoder<T> {
        EtcdEncoder(PhantomData)
    }

    fn decoder(&mut self) -> EtcdDecoder<U> {
        EtcdDecoder(PhantomData)
    }
}

#[derive(Debug)]
pub struct EtcdEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for EtcdEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.encoded_len());
        item.encode(dst)
            .map_err(|e| Status::internal(format!("grpc: error while marshaling: {e}")))
    }
}

#[derive(Debug)]
pub struct EtcdDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for EtcdDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(src).map(Some).map_err(|e| {
            let text = e.to_string();
            let detail = text.strip_prefix(PROST_PREFIX).unwrap_or(&text);
            Status::internal(format!("grpc: error unmarshalling request: {detail}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::RangeRequest;

    #[test]
    fn prost_words_decode_errors_with_the_prefix_replaced() {
        let e = RangeRequest::decode(&b"\xff\xff\xff"[..]).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with(PROST_PREFIX), "{text}");
    }
}
