//! Byte encodings shared by the store implementations: keys that sort by time, and values.
//!
//! Assets, agents and changes are JSON (few, and readable in a dump); inventories and status
//! samples are protobuf (many, compact, and the schema already evolves compatibly).

use prost::Message;

use crate::model::{
    InventoryMeta, InventoryRecord, ReachSample, StatusSample, from_unix_millis, unix_millis,
};

pub fn time_key(millis: i64) -> [u8; 8] {
    // Flip the sign bit so negative times still sort before positive ones.
    ((millis as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn time_from_key(bytes: &[u8]) -> Option<i64> {
    let array: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(array) ^ (1 << 63)) as i64)
}

/// `asset \0 time seq`: one asset's samples sort by time.
pub fn sample_key(sample: &StatusSample) -> Vec<u8> {
    let mut key = asset_prefix(&sample.asset_id);
    key.extend_from_slice(&time_key(unix_millis(sample.at)));
    key.extend_from_slice(&sample.seq.to_be_bytes());
    key
}

pub fn asset_prefix(asset: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(asset.len() + 17);
    key.extend_from_slice(asset.as_bytes());
    key.push(0);
    key
}

pub fn encode_sample(sample: &StatusSample) -> Vec<u8> {
    let mut value = Vec::with_capacity(1 + sample.status.encoded_len());
    value.push(u8::from(sample.clock_suspect));
    sample
        .status
        .encode(&mut value)
        .expect("Vec has room for any message");
    value
}

pub fn decode_sample(key: &[u8], value: &[u8]) -> Result<StatusSample, String> {
    let split = key
        .iter()
        .position(|b| *b == 0)
        .ok_or("sample key without asset separator")?;
    let asset_id = String::from_utf8(key[..split].to_vec()).map_err(|e| e.to_string())?;
    let rest = &key[split + 1..];
    let millis = time_from_key(rest).ok_or("sample key without time")?;
    let seq = rest
        .get(8..16)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or("sample key without sequence")?;
    let (flags, body) = value.split_first().ok_or("empty sample value")?;
    let status = caretaker_proto::v1::Status::decode(body).map_err(|e| e.to_string())?;
    Ok(StatusSample {
        asset_id,
        at: from_unix_millis(millis),
        seq,
        clock_suspect: *flags & 1 == 1,
        status,
    })
}

/// `asset \0 time`: one asset's ping verdicts sort by time.
pub fn reach_key(asset: &str, millis: i64) -> Vec<u8> {
    let mut key = asset_prefix(asset);
    key.extend_from_slice(&time_key(millis));
    key
}

/// `[up u8][rtt_us u32]`.
pub fn encode_reach(sample: &ReachSample) -> [u8; 5] {
    let mut value = [0u8; 5];
    value[0] = u8::from(sample.up);
    value[1..].copy_from_slice(&sample.rtt_us.to_be_bytes());
    value
}

pub fn decode_reach(key: &[u8], value: &[u8]) -> Result<ReachSample, String> {
    let split = key
        .iter()
        .position(|b| *b == 0)
        .ok_or("reach key without asset separator")?;
    let millis = time_from_key(&key[split + 1..]).ok_or("reach key without time")?;
    let rtt: [u8; 4] = value
        .get(1..5)
        .and_then(|b| b.try_into().ok())
        .ok_or("reach value too short")?;
    Ok(ReachSample {
        at: from_unix_millis(millis),
        up: value[0] == 1,
        rtt_us: u32::from_be_bytes(rtt),
    })
}

/// `[meta length u32][meta JSON][Inventory protobuf]`.
pub fn encode_inventory(record: &InventoryRecord) -> Vec<u8> {
    let meta = serde_json::to_vec(&record.meta).expect("meta serialises");
    let mut value = Vec::with_capacity(4 + meta.len() + record.inventory.encoded_len());
    value.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    value.extend_from_slice(&meta);
    record
        .inventory
        .encode(&mut value)
        .expect("Vec has room for any message");
    value
}

pub fn decode_inventory(value: &[u8]) -> Result<InventoryRecord, String> {
    let len = value
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or("inventory value too short")? as usize;
    let meta_bytes = value.get(4..4 + len).ok_or("inventory meta truncated")?;
    let meta: InventoryMeta = serde_json::from_slice(meta_bytes).map_err(|e| e.to_string())?;
    let inventory =
        caretaker_proto::v1::Inventory::decode(&value[4 + len..]).map_err(|e| e.to_string())?;
    Ok(InventoryRecord { meta, inventory })
}

/// `time id`: changes sort by time across all assets.
pub fn change_key(millis: i64, id: &str) -> Vec<u8> {
    let mut key = time_key(millis).to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn time_keys_sort_like_times(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(a.cmp(&b), time_key(a).cmp(&time_key(b)));
            prop_assert_eq!(time_from_key(&time_key(a)), Some(a));
        }
    }
}
