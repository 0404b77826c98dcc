// RecordBatch: what flows through a pipeline's graph. A batch holds byte stores (the first is
// usually the bytes a fetch read from the log) and, per record, plain-data views into them:
// key, value and header spans, the offset and timestamp, and, once a `json` transform has
// looked at the value, the byte positions of its top-level fields. Copying a record from one
// batch to another (a filter keeping it) copies a few integers; no byte is copied and nothing
// is allocated per record. Components that want owned records read `records` and build
// batches with `append(_:)`, paying for the copies themselves.
import SluiceLog

/// A run of bytes in one of a batch's stores; a negative count is null.
public struct ByteSpan: Sendable, Hashable {
    public var store: Int32
    public var start: Int32
    public var count: Int32

    public init(store: Int32, start: Int32, count: Int32) {
        self.store = store
        self.start = start
        self.count = count
    }

    public static let null = ByteSpan(store: 0, start: 0, count: -1)
    @inlinable public var isNull: Bool { count < 0 }
}

/// How much of a record's value is known as JSON.
public enum ParseState: UInt8, Sendable {
    /// Not looked at: expressions see the value as null.
    case none
    /// A JSON object whose top-level fields are indexed (`fields`).
    case fields
    /// A parsed tree (`trees`): non-object roots, objects with repeated keys, values built by
    /// components.
    case tree
}

/// One record of a batch: offsets into the batch's stores and tables, nothing owned.
public struct RecordSlot: Sendable {
    public var key: ByteSpan
    public var value: ByteSpan
    public var offset: Int64
    public var timestamp: Int64
    /// Position of the record's lane in `RecordBatch.lanes`.
    public var lane: Int32
    /// The record's headers: `headerCount` entries of `RecordBatch.headers` from `headerStart`.
    public var headerStart: Int32
    public var headerCount: Int32
    /// The value's top-level fields: `fieldCount` entries of `RecordBatch.fields` from
    /// `fieldStart`, positions relative to the value's first byte (`parse == .fields`), or
    /// the index of its tree in `RecordBatch.trees` in `fieldStart` (`parse == .tree`).
    public var fieldStart: Int32
    public var fieldCount: Int32
    public var parse: ParseState

    public init(key: ByteSpan, value: ByteSpan, offset: Int64, timestamp: Int64, lane: Int32, headerStart: Int32, headerCount: Int32, fieldStart: Int32, fieldCount: Int32, parse: ParseState) {
        self.key = key
        self.value = value
        self.offset = offset
        self.timestamp = timestamp
        self.lane = lane
        self.headerStart = headerStart
        self.headerCount = headerCount
        self.fieldStart = fieldStart
        self.fieldCount = fieldCount
        self.parse = parse
    }
}

/// A header of a batch's record; a null value has a negative count.
public struct HeaderSlot: Sendable {
    public var name: ByteSpan
    public var value: ByteSpan

    public init(name: ByteSpan, value: ByteSpan) {
        self.name = name
        self.value = value
    }
}

public struct RecordBatch: Sendable {
    public package(set) var stores: [[UInt8]]
    public var slots: [RecordSlot]
    public package(set) var headers: [HeaderSlot]
    public package(set) var fields: [JSONField]
    public package(set) var trees: [Value]
    /// The source partitions the records came from (`topic` nil for sources that are not topics).
    public package(set) var lanes: [SourceLane]
    /// The store that `append` writes new bytes to, created on first need.
    package var arena: Int32 = -1

    public init() {
        stores = []
        slots = []
        headers = []
        fields = []
        trees = []
        lanes = []
    }

    /// A batch of owned records (sources that build records one at a time).
    public init(_ records: [PipelineRecord]) {
        self.init()
        slots.reserveCapacity(records.count)
        for r in records { append(r) }
    }

    /// An empty batch that shares this one's stores and tables, so slots of this batch can be
    /// appended to it as they are.
    public func emptied(reservingCapacity n: Int = 0) -> RecordBatch {
        var b = self
        b.slots = []
        b.slots.reserveCapacity(n)
        return b
    }

    @inlinable public var count: Int { slots.count }
    @inlinable public var isEmpty: Bool { slots.isEmpty }

    // MARK: Reading

    /// The bytes of `span`, or nil when it is null.
    @inlinable
    public func withBytes<R>(_ span: ByteSpan, _ body: (UnsafeRawBufferPointer?) throws -> R) rethrows -> R {
        if span.isNull { return try body(nil) }
        return try stores[Int(span.store)].withUnsafeBytes { all in
            try body(UnsafeRawBufferPointer(rebasing: all[Int(span.start)..<Int(span.start + span.count)]))
        }
    }

    public func bytes(_ span: ByteSpan) -> [UInt8]? {
        withBytes(span) { $0.map { Array($0) } }
    }

    public func value(_ i: Int) -> [UInt8]? { bytes(slots[i].value) }
    public func key(_ i: Int) -> [UInt8]? { bytes(slots[i].key) }

    public func lane(_ i: Int) -> SourceLane { lanes.isEmpty ? SourceLane(topic: nil, partition: -1) : lanes[Int(slots[i].lane)] }

    /// The record's headers as owned values.
    public func recordHeaders(_ i: Int) -> [RecordHeader] {
        let s = slots[i]
        guard s.headerCount > 0 else { return [] }
        var out: [RecordHeader] = []
        out.reserveCapacity(Int(s.headerCount))
        for h in headers[Int(s.headerStart)..<Int(s.headerStart + s.headerCount)] {
            out.append(RecordHeader(name: withBytes(h.name) { $0.map { String(decoding: $0, as: UTF8.self) } ?? "" }, value: bytes(h.value)))
        }
        return out
    }

    /// The last header named `name` as text, nil when absent or null.
    public func header(_ i: Int, _ name: String) -> String? {
        let s = slots[i]
        var j = Int(s.headerStart + s.headerCount)
        while j > Int(s.headerStart) {
            j -= 1
            let h = headers[j]
            let matches = withBytes(h.name) { n in n.map { $0.elementsEqual(name.utf8) } ?? false }
            if matches { return withBytes(h.value) { $0.map { String(decoding: $0, as: UTF8.self) } } }
        }
        return nil
    }

    /// The record's parsed value as a tree (built from the bytes when only fields are
    /// indexed); nil when no `json` transform has seen it. Use where a whole tree is needed.
    public func parsed(_ i: Int) -> Value? {
        let s = slots[i]
        switch s.parse {
        case .none: return nil
        case .tree: return trees[Int(s.fieldStart)]
        case .fields: return withBytes(s.value) { b in b.flatMap { try? JSONIndex.materialize($0) } }
        }
    }

    /// The record as an owned value.
    public func record(_ i: Int) -> PipelineRecord {
        let s = slots[i]
        let lane = lane(i)
        return PipelineRecord(key: bytes(s.key), value: bytes(s.value), headers: recordHeaders(i), timestamp: s.timestamp, topic: lane.topic, partition: lane.partition, offset: s.offset, parsed: parsed(i))
    }

    /// Every record as an owned value (for components that are not on a hot path).
    public var records: [PipelineRecord] { (0..<count).map(record) }

    // MARK: Building

    package mutating func arenaStore() -> Int {
        if arena < 0 {
            arena = Int32(stores.count)
            stores.append([])
        }
        return Int(arena)
    }

    /// Copies `bytes` into the batch's arena and returns where they are.
    public mutating func store(_ bytes: UnsafeRawBufferPointer?) -> ByteSpan {
        guard let bytes else { return .null }
        let a = arenaStore()
        let start = stores[a].count
        stores[a].append(contentsOf: bytes)
        return ByteSpan(store: Int32(a), start: Int32(start), count: Int32(bytes.count))
    }

    public mutating func store(_ bytes: [UInt8]?) -> ByteSpan {
        guard let bytes else { return .null }
        return bytes.withUnsafeBytes { store($0) }
    }

    /// Adds a store the batch will read from as it is (a fetch's bytes); returns its number.
    public mutating func addStore(_ bytes: [UInt8]) -> Int32 {
        stores.append(bytes)
        return Int32(stores.count - 1)
    }

    /// The number of `lane` in `lanes`, added when new.
    public mutating func laneIndex(_ lane: SourceLane) -> Int32 {
        if let last = lanes.last, last == lane { return Int32(lanes.count - 1) }
        if let i = lanes.firstIndex(of: lane) { return Int32(i) }
        lanes.append(lane)
        return Int32(lanes.count - 1)
    }

    /// Appends an owned record, copying its bytes into the arena.
    public mutating func append(_ r: PipelineRecord) {
        let lane = laneIndex(SourceLane(topic: r.topic, partition: r.partition))
        let key = store(r.key), value = store(r.value)
        let headerStart = Int32(headers.count)
        for h in r.headers {
            let name = h.name.utf8.withContiguousStorageIfAvailable { store(UnsafeRawBufferPointer($0)) } ?? store(Array(h.name.utf8))
            headers.append(HeaderSlot(name: name, value: store(h.value)))
        }
        var slot = RecordSlot(key: key, value: value, offset: r.offset, timestamp: r.timestamp, lane: lane, headerStart: headerStart, headerCount: Int32(r.headers.count), fieldStart: 0, fieldCount: 0, parse: .none)
        if let parsed = r.parsed {
            slot.parse = .tree
            slot.fieldStart = Int32(trees.count)
            trees.append(parsed)
        }
        slots.append(slot)
    }

    /// Appends a record of lane 0 whose key and value are copied into the arena; its headers
    /// are the ones appended from `headerStart` on (clients that hand out records one by one).
    package mutating func appendCopied(key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?, offset: Int64, timestamp: Int64, headerStart: Int32) {
        let k = store(key), v = store(value)
        slots.append(RecordSlot(key: k, value: v, offset: offset, timestamp: timestamp, lane: 0, headerStart: headerStart, headerCount: Int32(headers.count) - headerStart, fieldStart: 0, fieldCount: 0, parse: .none))
    }

    /// Appends every record of `other`. Sharing nothing with it, the tables are appended and
    /// the slots renumbered; the bytes stay in `other`'s stores, which this batch now holds too.
    public mutating func append(contentsOf other: RecordBatch) {
        guard !other.isEmpty else { return }
        if isEmpty && stores.isEmpty {
            self = other
            return
        }
        let storeBase = Int32(stores.count), headerBase = Int32(headers.count), fieldBase = Int32(fields.count), treeBase = Int32(trees.count)
        stores.append(contentsOf: other.stores)
        for h in other.headers {
            headers.append(HeaderSlot(name: Self.rebased(h.name, storeBase), value: Self.rebased(h.value, storeBase)))
        }
        fields.append(contentsOf: other.fields)
        trees.append(contentsOf: other.trees)
        var laneMap: [Int32] = []
        for l in other.lanes { laneMap.append(laneIndex(l)) }
        slots.reserveCapacity(slots.count + other.count)
        for var s in other.slots {
            s.key = Self.rebased(s.key, storeBase)
            s.value = Self.rebased(s.value, storeBase)
            s.headerStart += headerBase
            if s.parse == .fields { s.fieldStart += fieldBase } else if s.parse == .tree { s.fieldStart += treeBase }
            if !laneMap.isEmpty { s.lane = laneMap[Int(s.lane)] }
            slots.append(s)
        }
        // New bytes go to a store of this batch's own from now on.
        arena = -1
    }

    static func rebased(_ span: ByteSpan, _ base: Int32) -> ByteSpan {
        span.isNull ? span : ByteSpan(store: span.store + base, start: span.start, count: span.count)
    }

    /// Appends `header` to slot `i`'s headers (the record's headers are moved to the end of
    /// the table when they are not already there).
    public mutating func addHeader(_ i: Int, name: String, value: String) {
        var s = slots[i]
        if s.headerStart + s.headerCount != Int32(headers.count) {
            let start = Int32(headers.count)
            for j in Int(s.headerStart)..<Int(s.headerStart + s.headerCount) { headers.append(headers[j]) }
            s.headerStart = start
        }
        let n = Array(name.utf8), v = Array(value.utf8)
        headers.append(HeaderSlot(name: store(n), value: store(v)))
        s.headerCount += 1
        slots[i] = s
    }
}

// MARK: Expression contexts over a batch

extension RecordBatch {
    /// Calls `body` with the index and expression context of every record, in order. One
    /// context serves the whole batch: per record only its plain fields (positions, offset,
    /// timestamp) change, and the topic, headers and tree only when they differ from the
    /// previous record's, so a batch of plain JSON records costs no reference counting per
    /// record (`withContext` builds and destroys a context for each call).
    public func forEachContext(_ body: (Int, EvalContext) -> Void) {
        var ctx = EvalContext(document: nil, value: .null, rawKey: nil, lane: SourceLane(topic: nil, partition: -1), offset: -1, timestamp: 0, headers: [])
        var lane: Int32 = -1
        var hasHeaders = false
        var hasTree = false
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        fields.withUnsafeBufferPointer { f in
            for i in 0..<slots.count {
                let s = slots[i]
                if s.lane != lane && !lanes.isEmpty {
                    lane = s.lane
                    let l = lanes[Int(lane)]
                    ctx.topic = l.topic
                    ctx.partition = l.partition
                }
                ctx.offset = s.offset
                ctx.timestamp = s.timestamp
                if s.headerCount > 0 {
                    ctx.headers = headerList(s)
                    hasHeaders = true
                } else if hasHeaders {
                    ctx.headers = []
                    hasHeaders = false
                }
                if s.parse == .tree {
                    ctx.value = trees[Int(s.fieldStart)]
                    hasTree = true
                } else if hasTree {
                    ctx.value = .null
                    hasTree = false
                }
                withBytes(s.key) { key in
                    ctx.rawKey = key
                    if s.parse == .fields {
                        withBytes(s.value) { bytes in
                            ctx.document = JSONDocument(bytes: bytes ?? empty, fields: UnsafeBufferPointer(rebasing: f[Int(s.fieldStart)..<Int(s.fieldStart + s.fieldCount)]))
                            body(i, ctx)
                        }
                    } else {
                        ctx.document = nil
                        body(i, ctx)
                    }
                }
            }
        }
    }

    /// A record's headers as the owned list expressions read.
    private func headerList(_ s: RecordSlot) -> [(String, [UInt8]?)] {
        var list: [(String, [UInt8]?)] = []
        list.reserveCapacity(Int(s.headerCount))
        for h in headers[Int(s.headerStart)..<Int(s.headerStart + s.headerCount)] {
            list.append((withBytes(h.name) { $0.map { String(decoding: $0, as: UTF8.self) } ?? "" }, bytes(h.value)))
        }
        return list
    }

    /// Calls `body` with the expression context of record `i`: fields are read straight from
    /// the value's bytes, the key and headers decoded only when an expression asks.
    public func withContext<R>(_ i: Int, _ body: (EvalContext) throws -> R) rethrows -> R {
        let s = slots[i]
        let lane = lanes.isEmpty ? SourceLane(topic: nil, partition: -1) : lanes[Int(s.lane)]
        let headerList = s.headerCount > 0 ? headerList(s) : []
        return try withBytes(s.key) { key in
            switch s.parse {
            case .fields:
                return try withBytes(s.value) { bytes in
                    try fields.withUnsafeBufferPointer { f in
                        let doc = JSONDocument(bytes: bytes ?? UnsafeRawBufferPointer(start: nil, count: 0), fields: UnsafeBufferPointer(rebasing: f[Int(s.fieldStart)..<Int(s.fieldStart + s.fieldCount)]))
                        return try body(EvalContext(document: doc, value: .null, rawKey: key, lane: lane, offset: s.offset, timestamp: s.timestamp, headers: headerList))
                    }
                }
            case .tree:
                return try body(EvalContext(document: nil, value: trees[Int(s.fieldStart)], rawKey: key, lane: lane, offset: s.offset, timestamp: s.timestamp, headers: headerList))
            case .none:
                return try body(EvalContext(document: nil, value: .null, rawKey: key, lane: lane, offset: s.offset, timestamp: s.timestamp, headers: headerList))
            }
        }
    }
}

/// A record's value as bytes and the positions of its top-level fields: what expressions
/// read fields from without building a tree. Valid only inside the call that made it.
public struct JSONDocument: @unchecked Sendable {
    public let bytes: UnsafeRawBufferPointer
    public let fields: UnsafeBufferPointer<JSONField>

    public init(bytes: UnsafeRawBufferPointer, fields: UnsafeBufferPointer<JSONField>) {
        self.bytes = bytes
        self.fields = fields
    }

    /// The whole value as a tree.
    public var tree: Value { (try? JSONIndex.materialize(bytes)) ?? .null }
}
