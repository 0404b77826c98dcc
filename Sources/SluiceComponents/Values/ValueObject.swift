// ValueObject: the ordered map behind `Value.object`. Keeps keys in insertion (JSON) order;
// looks keys up by linear search while small (records usually have a handful of fields, and
// comparing a few short strings beats hashing) and through a dictionary index above
// `indexThreshold` keys. A value type with copy-on-write storage (two arrays), Sendable.

/// An ordered map from string keys to values, in insertion order.
///
/// Setting an existing key replaces its value in place (the key keeps its position);
/// setting `nil` removes the key.
///
/// ```swift
/// var o = ValueObject()
/// o["b"] = 1
/// o["a"] = "x"
/// Value.object(o).description   // {"b":1,"a":"x"}
/// ```
public struct ValueObject: Sendable {
    public typealias Element = (key: String, value: Value)

    @usableFromInline package var entries: [Element]
    /// key → position in `entries`, only when there are more than `indexThreshold` keys.
    @usableFromInline var index: [String: Int]?

    /// Above this many keys lookups go through a hash index.
    public static let indexThreshold = 8

    public init() {
        entries = []
        index = nil
    }

    public init(minimumCapacity: Int) {
        entries = []
        entries.reserveCapacity(minimumCapacity)
        index = nil
    }

    /// Pairs in order; a repeated key keeps its first position and its last value.
    public init(_ pairs: some Sequence<(String, Value)>) {
        self.init()
        for (k, v) in pairs { updateValue(v, forKey: k) }
    }

    @inlinable public var count: Int { entries.count }
    @inlinable public var isEmpty: Bool { entries.isEmpty }
    public var keys: [String] { entries.map(\.key) }
    public var values: [Value] { entries.map(\.value) }

    /// The position of `key`, or nil.
    @inlinable
    public func index(forKey key: String) -> Int? {
        if let index { return index[key] }
        // Comparing lengths first skips most non-matching keys without a string comparison.
        let length = key.utf8.count
        return entries.withUnsafeBufferPointer { buffer in
            for i in 0..<buffer.count where buffer[i].key.utf8.count == length && buffer[i].key == key {
                return i
            }
            return nil
        }
    }

    /// The position of `key`, trying position `hint` first (records of one stream tend to
    /// have their fields in the same order).
    @inlinable
    public func index(forKey key: String, hint: Int) -> Int? {
        if hint >= 0 && hint < entries.count && entries[hint].key == key { return hint }
        return index(forKey: key)
    }

    @inlinable
    public subscript(key: String) -> Value? {
        get {
            guard let i = index(forKey: key) else { return nil }
            return entries[i].value
        }
        set {
            if let newValue { updateValue(newValue, forKey: key) } else { removeValue(forKey: key) }
        }
    }

    /// Sets `value` for `key`; returns the value it replaced, if any.
    @discardableResult
    public mutating func updateValue(_ value: Value, forKey key: String) -> Value? {
        if let i = index(forKey: key) {
            let old = entries[i].value
            entries[i].value = value
            return old
        }
        entries.append((key, value))
        if index != nil {
            index![key] = entries.count - 1
        } else if entries.count > Self.indexThreshold {
            rebuildIndex()
        }
        return nil
    }

    /// Removes `key`, keeping the order of the others; returns its value, if any.
    @discardableResult
    public mutating func removeValue(forKey key: String) -> Value? {
        guard let i = index(forKey: key) else { return nil }
        let old = entries.remove(at: i).value
        if index != nil {
            if entries.count > Self.indexThreshold { rebuildIndex() } else { index = nil }
        }
        return old
    }

    public mutating func removeAll() {
        entries.removeAll()
        index = nil
    }

    mutating func rebuildIndex() {
        var map = [String: Int](minimumCapacity: entries.count)
        for (i, e) in entries.enumerated() { map[e.key] = i }
        index = map
    }
}

extension ValueObject: RandomAccessCollection {
    public typealias Index = Int
    @inlinable public var startIndex: Int { 0 }
    @inlinable public var endIndex: Int { entries.count }
    @inlinable public subscript(position: Int) -> Element { entries[position] }
}

extension ValueObject: Hashable {
    /// Same keys with equal values, in any order.
    public static func == (lhs: ValueObject, rhs: ValueObject) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for (i, e) in lhs.entries.enumerated() {
            // Objects built the same way have the same order: try the same position first.
            if i < rhs.entries.count, rhs.entries[i].key == e.key {
                if rhs.entries[i].value != e.value { return false }
                continue
            }
            guard let other = rhs[e.key], other == e.value else { return false }
        }
        return true
    }

    /// Order-independent, to agree with `==`.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(entries.count)
        var sum: Int = 0
        for e in entries {
            var h = Hasher()
            h.combine(e.key)
            h.combine(e.value)
            sum = sum &+ h.finalize()
        }
        hasher.combine(sum)
    }
}

extension ValueObject: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, Value)...) {
        self.init(minimumCapacity: elements.count)
        for (k, v) in elements { updateValue(v, forKey: k) }
    }
}

extension ValueObject: CustomStringConvertible {
    public var description: String { Value.object(self).description }
}
