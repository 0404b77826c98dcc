// Decompression of record batches that Kafka clients sent compressed (attributes codec 1–4).
// Batches are stored as sent; readers that need the records (in-process consumers,
// pipelines) decompress here. gzip, zstd and lz4 use the system's libz, libzstd and liblz4,
// loaded when first needed (they come with librdkafka/kcat); snappy is decoded here.
#if canImport(Glibc)
import Glibc
#endif

public enum RecordCompression {
    /// The records section of a compressed batch, decompressed. Output beyond `limit` bytes is
    /// an error, thrown before more than `limit` bytes are allocated (a zip bomb is refused).
    public static func decompress(codec: Int, _ data: UnsafeRawBufferPointer, limit: Int = Int.max) throws(LogError) -> [UInt8] {
        let limit = max(limit, 1)
        switch codec {
        case 1: return try Gzip.inflate(data, limit: limit)
        case 2: return try Snappy.decode(data, limit: limit)
        case 3: return try LZ4Frame.decode(data, limit: limit)
        case 4: return try Zstd.decode(data, limit: limit)
        default: throw LogError(.invalidBatch, "unknown compression codec \(codec)")
        }
    }

    /// Whether the library that decompresses `codec` is present (snappy is built in).
    public static func canDecompress(codec: Int) -> Bool {
        switch codec {
        case 0, 2: return true
        case 1: return Gzip.fns != nil
        case 3: return LZ4Frame.fns != nil
        case 4: return Zstd.fns != nil
        default: return false
        }
    }

    /// The first buffer a decoder allocates: a guess from the input size, within the limit.
    static func initialCapacity(_ inputCount: Int, limit: Int) -> Int {
        max(1, min(limit, max(1024, inputCount * 4)))
    }

    /// How much to grow a full output buffer of `count` bytes, or nil when it is at the limit.
    static func growth(_ count: Int, limit: Int) -> Int? {
        count >= limit ? nil : min(count, limit - count)
    }

    static func tooLarge(_ codec: String, _ limit: Int) -> LogError {
        LogError(.corruptBatch, "\(codec): the records decompress to more than \(limit) bytes, the limit")
    }

    /// A symbol from a shared library, or nil.
    static func symbol(_ libraries: [String], _ name: String) -> UnsafeMutableRawPointer? {
        for lib in libraries {
            if let h = dlopen(lib, RTLD_NOW | RTLD_LOCAL), let s = dlsym(h, name) { return s }
        }
        return nil
    }

    static func missing(_ codec: String, _ library: String) -> LogError {
        LogError(.invalidBatch, "the batch is \(codec)-compressed and \(library) could not be loaded to decompress it (install it, e.g. apt-get install kcat brings it)")
    }
}

// MARK: gzip (zlib's inflate with gzip framing)

private struct ZStream {
    var nextIn: UnsafeMutablePointer<UInt8>? = nil
    var availIn: UInt32 = 0
    var totalIn: UInt = 0
    var nextOut: UnsafeMutablePointer<UInt8>? = nil
    var availOut: UInt32 = 0
    var totalOut: UInt = 0
    var msg: UnsafePointer<CChar>? = nil
    var state: OpaquePointer? = nil
    var zalloc: OpaquePointer? = nil
    var zfree: OpaquePointer? = nil
    var opaque: OpaquePointer? = nil
    var dataType: Int32 = 0
    var adler: UInt = 0
    var reserved: UInt = 0
}

private enum Gzip {
    typealias InitFn = @convention(c) (UnsafeMutableRawPointer, Int32, UnsafePointer<CChar>, Int32) -> Int32
    typealias InflateFn = @convention(c) (UnsafeMutableRawPointer, Int32) -> Int32
    typealias EndFn = @convention(c) (UnsafeMutableRawPointer) -> Int32
    static let libs = ["libz.so.1", "libz.so"]
    static let fns: (InitFn, InflateFn, EndFn)? = {
        guard let i = RecordCompression.symbol(libs, "inflateInit2_"), let f = RecordCompression.symbol(libs, "inflate"), let e = RecordCompression.symbol(libs, "inflateEnd") else { return nil }
        return (unsafeBitCast(i, to: InitFn.self), unsafeBitCast(f, to: InflateFn.self), unsafeBitCast(e, to: EndFn.self))
    }()

    static func inflate(_ data: UnsafeRawBufferPointer, limit: Int) throws(LogError) -> [UInt8] {
        guard let (initFn, inflateFn, endFn) = fns else { throw RecordCompression.missing("gzip", "libz.so.1") }
        var out = [UInt8](repeating: 0, count: RecordCompression.initialCapacity(data.count, limit: limit))
        let streamPointer = UnsafeMutablePointer<ZStream>.allocate(capacity: 1)
        streamPointer.initialize(to: ZStream())
        defer { streamPointer.deallocate() }
        let raw = UnsafeMutableRawPointer(streamPointer)
        // 15 window bits + 16: gzip framing.
        guard initFn(raw, 31, "1.2.13", Int32(MemoryLayout<ZStream>.size)) == 0 else { throw LogError(.corruptBatch, "gzip: cannot start inflating") }
        defer { _ = endFn(raw) }
        var input = Array(data)
        var produced = 0
        let status: Int32 = input.withUnsafeMutableBufferPointer { inp in
            streamPointer.pointee.nextIn = inp.baseAddress
            streamPointer.pointee.availIn = UInt32(inp.count)
            while true {
                if produced == out.count {
                    guard let more = RecordCompression.growth(out.count, limit: limit) else { return Int32.min }
                    out += [UInt8](repeating: 0, count: more)
                }
                let rc: Int32 = out.withUnsafeMutableBufferPointer { o in
                    streamPointer.pointee.nextOut = o.baseAddress! + produced
                    streamPointer.pointee.availOut = UInt32(o.count - produced)
                    let rc = inflateFn(raw, 0)
                    produced = o.count - Int(streamPointer.pointee.availOut)
                    return rc
                }
                if rc == 1 { return 1 }  // Z_STREAM_END
                if rc != 0 && !(rc == -5 && produced == out.count) { return rc }
            }
        }
        if status == Int32.min { throw RecordCompression.tooLarge("gzip", limit) }
        guard status == 1 else { throw LogError(.corruptBatch, "gzip: the records do not inflate (zlib status \(status))") }
        out.removeSubrange(produced...)
        return out
    }
}

// MARK: zstd (streaming, so frames without a content size work too)

private struct ZstdBuffer { var ptr: UnsafeMutableRawPointer?; var size: Int; var pos: Int }

private enum Zstd {
    typealias CreateFn = @convention(c) () -> OpaquePointer?
    typealias FreeFn = @convention(c) (OpaquePointer?) -> Int
    typealias StreamFn = @convention(c) (OpaquePointer?, UnsafeMutableRawPointer, UnsafeMutableRawPointer) -> Int
    typealias IsErrorFn = @convention(c) (Int) -> UInt32
    static let libs = ["libzstd.so.1", "libzstd.so"]
    static let fns: (CreateFn, FreeFn, StreamFn, IsErrorFn)? = {
        guard let c = RecordCompression.symbol(libs, "ZSTD_createDCtx"), let f = RecordCompression.symbol(libs, "ZSTD_freeDCtx"),
              let s = RecordCompression.symbol(libs, "ZSTD_decompressStream"), let e = RecordCompression.symbol(libs, "ZSTD_isError") else { return nil }
        return (unsafeBitCast(c, to: CreateFn.self), unsafeBitCast(f, to: FreeFn.self), unsafeBitCast(s, to: StreamFn.self), unsafeBitCast(e, to: IsErrorFn.self))
    }()

    static func decode(_ data: UnsafeRawBufferPointer, limit: Int) throws(LogError) -> [UInt8] {
        guard let (create, free, stream, isError) = fns else { throw RecordCompression.missing("zstd", "libzstd.so.1") }
        let ctx = create()
        defer { _ = free(ctx) }
        var out = [UInt8](repeating: 0, count: RecordCompression.initialCapacity(data.count, limit: limit))
        var input = ZstdBuffer(ptr: UnsafeMutableRawPointer(mutating: data.baseAddress), size: data.count, pos: 0)
        var produced = 0
        while true {
            if produced == out.count {
                guard let more = RecordCompression.growth(out.count, limit: limit) else {
                    throw RecordCompression.tooLarge("zstd", limit)
                }
                out += [UInt8](repeating: 0, count: more)
            }
            let rc: Int = out.withUnsafeMutableBytes { o in
                var output = ZstdBuffer(ptr: o.baseAddress! + produced, size: o.count - produced, pos: 0)
                let rc = withUnsafeMutablePointer(to: &output) { out in
                    withUnsafeMutablePointer(to: &input) { inp in stream(ctx, UnsafeMutableRawPointer(out), UnsafeMutableRawPointer(inp)) }
                }
                produced += output.pos
                return rc
            }
            if isError(rc) != 0 { throw LogError(.corruptBatch, "zstd: the records do not decompress") }
            if rc == 0 && input.pos == input.size { break }
            if input.pos == input.size && produced < out.count && rc != 0 { throw LogError(.corruptBatch, "zstd: the records end inside a frame") }
        }
        out.removeSubrange(produced...)
        return out
    }
}

// MARK: lz4 (the frame format Kafka uses with record batches)

private enum LZ4Frame {
    typealias CreateFn = @convention(c) (UnsafeMutablePointer<OpaquePointer?>, UInt32) -> Int
    typealias FreeFn = @convention(c) (OpaquePointer?) -> Int
    typealias DecompressFn = @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>, UnsafeRawPointer?, UnsafeMutablePointer<Int>, UnsafeRawPointer?) -> Int
    typealias IsErrorFn = @convention(c) (Int) -> UInt32
    static let libs = ["liblz4.so.1", "liblz4.so"]
    static let fns: (CreateFn, FreeFn, DecompressFn, IsErrorFn)? = {
        guard let c = RecordCompression.symbol(libs, "LZ4F_createDecompressionContext"), let f = RecordCompression.symbol(libs, "LZ4F_freeDecompressionContext"),
              let d = RecordCompression.symbol(libs, "LZ4F_decompress"), let e = RecordCompression.symbol(libs, "LZ4F_isError") else { return nil }
        return (unsafeBitCast(c, to: CreateFn.self), unsafeBitCast(f, to: FreeFn.self), unsafeBitCast(d, to: DecompressFn.self), unsafeBitCast(e, to: IsErrorFn.self))
    }()

    static func decode(_ data: UnsafeRawBufferPointer, limit: Int) throws(LogError) -> [UInt8] {
        guard let (create, free, decompress, isError) = fns else { throw RecordCompression.missing("lz4", "liblz4.so.1") }
        var ctx: OpaquePointer?
        guard isError(create(&ctx, 100)) == 0 else { throw LogError(.corruptBatch, "lz4: cannot create a decompression context") }
        defer { _ = free(ctx) }
        var out = [UInt8](repeating: 0, count: RecordCompression.initialCapacity(data.count, limit: limit))
        var consumed = 0
        var produced = 0
        while consumed < data.count {
            if produced == out.count {
                guard let more = RecordCompression.growth(out.count, limit: limit) else {
                    throw RecordCompression.tooLarge("lz4", limit)
                }
                out += [UInt8](repeating: 0, count: more)
            }
            let rc: Int = out.withUnsafeMutableBytes { o in
                var dstSize = o.count - produced
                var srcSize = data.count - consumed
                let rc = decompress(ctx, o.baseAddress! + produced, &dstSize, data.baseAddress! + consumed, &srcSize, nil)
                produced += dstSize
                consumed += srcSize
                return rc
            }
            if isError(rc) != 0 { throw LogError(.corruptBatch, "lz4: the records do not decompress") }
            if rc == 0 { break }
        }
        out.removeSubrange(produced...)
        return out
    }
}

// MARK: snappy (raw blocks, or the xerial framing Java clients write)

enum Snappy {
    static let xerialMagic: [UInt8] = [0x82, 0x53, 0x4E, 0x41, 0x50, 0x50, 0x59, 0x00]

    static func decode(_ data: UnsafeRawBufferPointer, limit: Int = Int.max) throws(LogError) -> [UInt8] {
        if data.count >= 16 && Array(data.prefix(8)) == xerialMagic {
            // magic, version, compatible version, then (int32 length, raw block) chunks.
            var out: [UInt8] = []
            var pos = 16
            while pos + 4 <= data.count {
                let n = Int(UInt32(data[pos]) << 24 | UInt32(data[pos + 1]) << 16 | UInt32(data[pos + 2]) << 8 | UInt32(data[pos + 3]))
                pos += 4
                guard n >= 0, pos + n <= data.count else { throw LogError(.corruptBatch, "snappy: a chunk overruns the records") }
                out += try block(UnsafeRawBufferPointer(rebasing: data[pos..<(pos + n)]), limit: limit - out.count)
                pos += n
            }
            return out
        }
        return try block(data, limit: limit)
    }

    /// One raw snappy block: the uncompressed length (varint), then literals and copies.
    static func block(_ src: UnsafeRawBufferPointer, limit: Int = Int.max) throws(LogError) -> [UInt8] {
        func bad(_ why: String) -> LogError { LogError(.corruptBatch, "snappy: \(why)") }
        var pos = 0
        var length = 0
        var shift = 0
        while true {
            guard pos < src.count, shift <= 28 else { throw bad("bad length") }
            let b = src[pos]; pos += 1
            length |= Int(b & 0x7f) << shift
            if b & 0x80 == 0 { break }
            shift += 7
        }
        guard length <= 256 << 20 else { throw bad("a block claims \(length) bytes") }
        guard length <= limit else { throw RecordCompression.tooLarge("snappy", limit) }
        var out: [UInt8] = []
        out.reserveCapacity(length)
        while pos < src.count {
            let tag = src[pos]; pos += 1
            switch tag & 3 {
            case 0:
                var n = Int(tag >> 2)
                if n >= 60 {
                    let extra = n - 59
                    guard pos + extra <= src.count else { throw bad("truncated literal length") }
                    n = 0
                    for i in 0..<extra { n |= Int(src[pos + i]) << (8 * i) }
                    pos += extra
                }
                n += 1
                guard pos + n <= src.count else { throw bad("truncated literal") }
                out += src[pos..<(pos + n)]
                pos += n
            default:
                let n: Int, offset: Int
                switch tag & 3 {
                case 1:
                    guard pos < src.count else { throw bad("truncated copy") }
                    n = Int((tag >> 2) & 7) + 4
                    offset = Int(tag >> 5) << 8 | Int(src[pos]); pos += 1
                case 2:
                    guard pos + 2 <= src.count else { throw bad("truncated copy") }
                    n = Int(tag >> 2) + 1
                    offset = Int(src[pos]) | Int(src[pos + 1]) << 8; pos += 2
                default:
                    guard pos + 4 <= src.count else { throw bad("truncated copy") }
                    n = Int(tag >> 2) + 1
                    offset = Int(src[pos]) | Int(src[pos + 1]) << 8 | Int(src[pos + 2]) << 16 | Int(src[pos + 3]) << 24; pos += 4
                }
                guard offset > 0, offset <= out.count, out.count + n <= length else { throw bad("a copy reaches outside the output") }
                let start = out.count - offset
                for i in 0..<n { out.append(out[start + i]) }
            }
        }
        guard out.count == length else { throw bad("\(out.count) bytes decoded, \(length) announced") }
        return out
    }
}
