//! A minimal DER writer and reader for the few structures no dependency builds for us: the
//! Authority Information Access extension, and OCSP requests and responses. Definite lengths
//! only.

pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

pub fn sequence(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

pub fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut encode = |mut v: u64| {
        let mut tmp = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        tmp.reverse();
        body.extend(tmp);
    };
    encode(arcs[0] * 40 + arcs[1]);
    for &arc in &arcs[2..] {
        encode(arc);
    }
    tlv(0x06, &body)
}

/// GeneralName uniformResourceIdentifier: [6] IMPLICIT IA5String.
pub fn uri_general_name(uri: &str) -> Vec<u8> {
    tlv(0x86, uri.as_bytes())
}

pub const OID_AIA: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];
pub const OID_AD_OCSP: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1];
pub const OID_AD_CA_ISSUERS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 2];

/// AuthorityInfoAccessSyntax (RFC 5280 §4.2.2.1) with an OCSP responder and a caIssuers URL.
pub fn authority_info_access(ocsp: Option<&str>, ca_issuers: &str) -> Vec<u8> {
    let mut descriptions = Vec::new();
    if let Some(ocsp) = ocsp {
        descriptions.push(sequence(&[oid(OID_AD_OCSP), uri_general_name(ocsp)]));
    }
    descriptions.push(sequence(&[oid(OID_AD_CA_ISSUERS), uri_general_name(ca_issuers)]));
    sequence(&descriptions)
}

/// A DER reader for the few structures this crate parses itself (OCSP requests). Definite
/// lengths only; every read is bounds-checked and returns None on malformed input.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// Reads one TLV; returns its tag, its content, and the whole encoding.
    pub fn read_any(&mut self) -> Option<(u8, &'a [u8], &'a [u8])> {
        let tag = *self.data.first()?;
        let first = *self.data.get(1)? as usize;
        let (len, header) = if first < 0x80 {
            (first, 2)
        } else {
            let count = first & 0x7f;
            if count == 0 || count > 4 {
                return None;
            }
            let mut len = 0usize;
            for i in 0..count {
                len = (len << 8) | *self.data.get(2 + i)? as usize;
            }
            (len, 2 + count)
        };
        let end = header.checked_add(len)?;
        let whole = self.data.get(..end)?;
        let content = &whole[header..];
        self.data = &self.data[end..];
        Some((tag, content, whole))
    }

    /// Reads one TLV that must have `tag`.
    pub fn read(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.read_any()? {
            (t, content, _) if t == tag => Some(content),
            _ => None,
        }
    }

    /// Reads an optional TLV with `tag`.
    pub fn read_optional(&mut self, tag: u8) -> Option<Option<&'a [u8]>> {
        if self.peek_tag() == Some(tag) {
            self.read(tag).map(Some)
        } else {
            Some(None)
        }
    }
}

pub fn octet_string(content: &[u8]) -> Vec<u8> {
    tlv(0x04, content)
}

pub fn integer_bytes(content: &[u8]) -> Vec<u8> {
    tlv(0x02, content)
}

pub fn enumerated(value: u8) -> Vec<u8> {
    tlv(0x0a, &[value])
}

pub fn null() -> Vec<u8> {
    vec![0x05, 0x00]
}

/// GeneralizedTime, `YYYYMMDDHHMMSSZ`.
pub fn generalized_time(t: time::OffsetDateTime) -> Vec<u8> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let text = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    tlv(0x18, text.as_bytes())
}

/// A BIT STRING with no unused bits.
pub fn bit_string(content: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(content.len() + 1);
    body.push(0);
    body.extend_from_slice(content);
    tlv(0x03, &body)
}

/// Context-specific constructed tag `[n]`, EXPLICIT.
pub fn explicit(n: u8, content: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_oids_and_long_lengths() {
        assert_eq!(oid(&[1, 2, 840, 113549]), vec![0x06, 0x06, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]);
        let long = tlv(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }
}
