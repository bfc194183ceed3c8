//! Service sharding, identical to the Go exporter's so a fleet can be migrated shard by shard.

use xxhash_rust::xxh64::xxh64;

/// True when service `id` belongs to shard `n` of `m` (1-based): `xxh64(id, seed 0) % m == n-1`.
pub fn in_shard(id: &str, n: u64, m: u64) -> bool {
    m > 0 && xxh64(id.as_bytes(), 0) % m == n - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_vectors() {
        // Vectors from the Go exporter's service-cache tests.
        assert!(in_shard("AbcDef123ghiJKlmnOPsq", 1, 3));
        assert!(!in_shard("AbcDef123ghiJKlmnOPsq", 2, 3));
        assert!(in_shard("XXXXXXXXXXXXXXXXXXXXXX", 2, 3));
        assert!(!in_shard("XXXXXXXXXXXXXXXXXXXXXX", 3, 3));
        assert!(in_shard("anything", 1, 1));
    }
}
