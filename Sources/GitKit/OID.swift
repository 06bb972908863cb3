import CLibgit2

/// A git object id (SHA-1), a plain Sendable value.
public struct OID: Hashable, Sendable, CustomStringConvertible, Comparable {
    public var raw: git_oid

    public init(_ raw: git_oid) { self.raw = raw }

    /// Parses a full 40-character hex id; nil if it is not one.
    public init?(hex: String) { self.init(hexUTF8: hex.utf8) }

    /// Parses a full 40-character hex id from its UTF-8 bytes (no String made); nil if it is not one.
    public init?<Bytes: Collection>(hexUTF8 bytes: Bytes) where Bytes.Element == UInt8 {
        guard bytes.count == 40 else { return nil }
        var oid = git_oid()
        var ok = true
        withUnsafeMutableBytes(of: &oid.id) { id in
            var i = bytes.startIndex
            for n in 0..<20 {
                let hi = hexValue(bytes[i]); i = bytes.index(after: i)
                let lo = hexValue(bytes[i]); i = bytes.index(after: i)
                guard hi < 16, lo < 16 else { ok = false; return }
                id[n] = hi << 4 | lo
            }
        }
        guard ok else { return nil }
        raw = oid
    }

    public var hex: String {
        String(unsafeUninitializedCapacity: 40) { out in
            withUnsafeBytes(of: raw.id) { id in
                for i in 0..<20 {
                    out[2 * i] = hexDigit(id[i] >> 4)
                    out[2 * i + 1] = hexDigit(id[i] & 15)
                }
            }
            return 40
        }
    }

    /// Appends the 40 lowercase hex digits to `bytes`.
    public func appendHex(to bytes: inout [UInt8]) {
        withUnsafeBytes(of: raw.id) { id in
            for i in 0..<20 {
                bytes.append(hexDigit(id[i] >> 4))
                bytes.append(hexDigit(id[i] & 15))
            }
        }
    }

    public var short: String { String(hex.prefix(10)) }
    public var description: String { hex }
    public var isZero: Bool { var c = raw; return git_oid_is_zero(&c) == 1 }

    /// Compared here as two 8-byte words and a 4-byte one (a call into libgit2 per comparison
    /// cost more than the comparison: ids are compared in every dictionary lookup).
    public static func == (a: OID, b: OID) -> Bool {
        withUnsafeBytes(of: a.raw.id) { x in
            withUnsafeBytes(of: b.raw.id) { y in
                x.loadUnaligned(as: UInt64.self) == y.loadUnaligned(as: UInt64.self)
                    && x.loadUnaligned(fromByteOffset: 8, as: UInt64.self) == y.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
                    && x.loadUnaligned(fromByteOffset: 16, as: UInt32.self) == y.loadUnaligned(fromByteOffset: 16, as: UInt32.self)
            }
        }
    }
    public static func < (a: OID, b: OID) -> Bool {
        var x = a.raw, y = b.raw
        return git_oid_cmp(&x, &y) < 0
    }
    /// Ids are uniformly random: their first eight bytes hash as well as all twenty.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(withUnsafeBytes(of: raw.id) { $0.loadUnaligned(as: UInt64.self) })
    }
}

extension git_oid: @retroactive @unchecked Sendable {}

/// The lowercase hex digit of a value below 16.
@inline(__always) func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 48 + v : 87 + v }

/// The value of a hex digit, 255 for any other byte.
@inline(__always) private func hexValue(_ c: UInt8) -> UInt8 {
    switch c {
    case 48...57: c - 48
    case 97...102: c - 87
    case 65...70: c - 55
    default: 255
    }
}
