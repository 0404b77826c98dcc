// WebAssembly transforms, run in-process by WasmKit's interpreter. One call per batch: the
// host writes the batch into the module's linear memory (a table of fixed-size record
// descriptors, then the bytes), calls `sluice_transform`, and reads back a list of entries
// that keep, replace or fail input records. The module gets no file, network or environment
// access (its only imports are `sluice.log` and `sluice.now_ms`), a fuel budget per call and
// a ceiling on its memory. The ABI is in docs/plugins.md.
import Foundation
import Logging
import SluiceLog
import Synchronization
@_spi(Fuzzing) import WasmKit
import WAT

enum WasmABI {
    static let headerBytes = 8
    static let descriptorBytes = 48
    static let opKeep: UInt32 = 0
    static let opValue: UInt32 = 1
    static let opKeyValue: UInt32 = 2
    static let opError: UInt32 = 3
    static let exports = ["memory", "sluice_alloc", "sluice_transform"]
}

/// Refuses memory growth past the component's `memory_limit`, and remembers the last refusal
/// so an error that follows can say why. Used by one instance, so by one thread at a time.
final class WasmMemoryLimit: ResourceLimiter, @unchecked Sendable {
    let bytes: Int
    var refused: Int?
    init(bytes: Int) { self.bytes = bytes }
    func limitMemoryGrowth(to desired: Int) throws -> Bool {
        if desired <= bytes { return true }
        refused = desired
        return false
    }
    func limitTableGrowth(to desired: Int) throws -> Bool { desired <= 100_000 }
}

/// A module compiled once per component; instances are made from it per lane.
final class WasmTransform: Transform, @unchecked Sendable {
    let id: String
    let manifest: PluginManifest
    let module: Module
    let fuel: UInt64
    let memoryLimit: Int
    /// The plugin's fields as JSON, handed to `sluice_configure` of each new instance.
    let configuration: [UInt8]
    let logger = Logger(label: "sluice.plugin")
    /// Idle instances. A lane takes one for a batch and gives it back, so lanes running side
    /// by side each have their own and none waits for another.
    private let idle = Mutex<[WasmInstance]>([])

    init(manifest: PluginManifest, config: ComponentConfig) throws {
        id = config.id
        self.manifest = manifest
        fuel = UInt64(max(1, config.int("fuel") ?? 100_000_000))
        var fields = ValueObject()
        for f in manifest.fields { if let v = config.values[f.name] { fields[f.name] = PluginWire.json(v) } }
        configuration = JSON.serialize(.object(fields))
        memoryLimit = Int(config.bytes("memory_limit") ?? (64 << 20))
        let path = manifest.resolvedEntry[0]
        let label = "wasm plugin '\(manifest.name)' (\(config.id))"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SluiceComponents.ComponentError(component: config.id, "\(label): cannot read its module \(path)")
        }
        var bytes = [UInt8](data)
        if path.hasSuffix(".wat") {
            do { bytes = try wat2wasm(String(decoding: bytes, as: UTF8.self)) } catch {
                throw SluiceComponents.ComponentError(component: config.id, "\(label): \(path) is not valid WebAssembly text: \(error)")
            }
        }
        do { module = try parseWasm(bytes: bytes) } catch {
            throw SluiceComponents.ComponentError(component: config.id, "\(label): \(path) is not a valid WebAssembly module: \(error)")
        }
        // Instantiate once now, so a module with a missing export or a forbidden import fails
        // when the pipeline starts, not with its first batch.
        let first = try makeInstance()
        idle.withLock { $0.append(first) }
    }

    var label: String { "wasm plugin '\(manifest.name)' (\(id))" }

    func makeInstance() throws -> WasmInstance {
        do {
            let instance = try WasmInstance(module: module, fuel: fuel, memoryLimit: memoryLimit, label: label, logger: logger)
            try instance.configure(configuration)
            return instance
        } catch let e as SluiceComponents.ComponentError {
            throw e
        } catch let e as WasmCallFailure {
            throw SluiceComponents.ComponentError(component: id, "\(label) \(e.description)")
        } catch {
            throw SluiceComponents.ComponentError(component: id, "\(label) cannot be instantiated: \(Self.firstLine(error))")
        }
    }

    static func firstLine(_ error: any Error) -> String {
        let text = "\(error)"
        return String(text.split(separator: "\n", maxSplits: 1).first ?? Substring(text))
    }

    func process(_ batch: RecordBatch, into output: inout TransformOutput, context: LaneContext) async throws {
        guard !batch.isEmpty else { return }
        let instance = try idle.withLock { $0.popLast() } ?? makeInstance()
        do {
            try instance.run(batch, into: &output, component: id)
            idle.withLock { $0.append(instance) }
        } catch let e as WasmCallFailure {
            // The module trapped, ran out of fuel or answered nonsense: its instance may be
            // half-way through changing its own state, so it is dropped and the next batch
            // gets a fresh one. The batch's records go to `.errors`.
            let message = "\(label) \(e.description)"
            logger.warning("\(message)")
            for s in batch.slots { output.fail(s, component: id, message) }
        }
    }
}

struct WasmCallFailure: Error, CustomStringConvertible {
    var description: String
}

/// One instance of the module, used by one lane at a time (the transform's pool hands it to
/// one caller at a time, which is what makes it Sendable).
final class WasmInstance: @unchecked Sendable {
    let store: Store
    let instance: Instance
    let memory: Memory
    let alloc: Function
    let transform: Function
    let fuel: UInt64
    let memoryLimit: Int
    var stack: ExecutionStack
    let limiter: WasmMemoryLimit
    /// Where the host writes input batches in linear memory, from `sluice_alloc`.
    var inputAt: UInt32 = 0
    var inputCapacity = 0

    init(module: Module, fuel: UInt64, memoryLimit: Int, label: String, logger: Logger) throws {
        limiter = WasmMemoryLimit(bytes: memoryLimit)
        let engine = Engine(configuration: EngineConfiguration(memoryBoundsChecking: .software, fuelMetering: true))
        store = Store(engine: engine)
        store.resourceLimiter = limiter
        for i in module.imports where i.module != "sluice" || !["log", "now_ms"].contains(i.name) {
            throw SluiceComponents.ComponentError(component: label, "\(label) imports \(i.module).\(i.name); a Sluice WebAssembly plugin may import only sluice.log and sluice.now_ms (no file, network or environment access)")
        }
        var imports = Imports()
        imports.define(module: "sluice", name: "log", Function(store: store, parameters: [.i32, .i32, .i32]) { caller, args in
            guard let mem = caller.instance?.exports[memory: "memory"] else { return [] }
            let at = Int(args[1].i32), count = min(Int(args[2].i32), 4096)
            guard at >= 0, count >= 0, at + count <= mem.byteCount else { return [] }
            let text = mem.withUnsafeBufferPointer(offset: UInt(at), count: count) { String(decoding: $0, as: UTF8.self) }
            let level: Logger.Level = switch args[0].i32 { case 0: .debug; case 1: .info; case 2: .warning; default: .error }
            logger.log(level: level, "\(text)", metadata: ["plugin": "\(label)"])
            return []
        })
        imports.define(module: "sluice", name: "now_ms", Function(store: store, parameters: [], results: [.i64]) { _, _ in
            [.i64(UInt64(bitPattern: currentTimeMillis()))]
        })
        store.fuel = Fuel(remaining: fuel)
        let made = try module.instantiate(store: store, imports: imports)
        instance = made
        guard let memory = made.exports[memory: "memory"], let alloc = made.exports[function: "sluice_alloc"],
              let transform = made.exports[function: "sluice_transform"] else {
            let missing = WasmABI.exports.filter { made.export($0) == nil }
            throw SluiceComponents.ComponentError(component: label, "\(label) does not export \(missing.joined(separator: ", ")); the ABI needs memory, sluice_alloc(i32) -> i32 and sluice_transform(i32, i32) -> i32")
        }
        self.memory = memory
        self.alloc = alloc
        self.transform = transform
        self.fuel = fuel
        self.memoryLimit = memoryLimit
        stack = ExecutionStack(engine: engine)
    }

    /// Hands the plugin's fields (JSON) to `sluice_configure`, when the module exports it.
    func configure(_ json: [UInt8]) throws {
        guard let configure = instance.exports[function: "sluice_configure"] else { return }
        let at = try call(alloc, [.i32(UInt32(json.count + 1))], what: "sluice_alloc(\(json.count + 1))")
        guard at != 0, Int(at) + json.count <= memory.byteCount else { throw WasmCallFailure(description: "sluice_alloc returned \(at) for its configuration") }
        json.withUnsafeBytes { src in
            memory.withUnsafeMutableBufferPointer(offset: UInt(at), count: json.count) { $0.copyMemory(from: src) }
        }
        let code = try call(configure, [.i32(at), .i32(UInt32(json.count))], what: "sluice_configure")
        if code != 0 { throw WasmCallFailure(description: "refused its configuration \(String(decoding: json, as: UTF8.self)) (sluice_configure returned \(Int32(bitPattern: code)))") }
    }

    private func call(_ f: Function, _ args: [WasmKit.Value], what: String) throws -> UInt32 {
        store.fuel = Fuel(remaining: fuel)
        limiter.refused = nil
        let results: [WasmKit.Value]
        do { results = try f.invoke(args, on: &stack) } catch {
            if let r = limiter.refused {
                throw WasmCallFailure(description: "trapped (\(WasmTransform.firstLine(error))) after growing its memory to \(r) bytes was refused: memory_limit is \(limiter.bytes) bytes, in \(what)")
            }
            var reason = WasmTransform.firstLine(error)
            if reason.hasPrefix("Trap: ") { reason.removeFirst(6) }
            if reason == "out of fuel" { reason = "ran out of fuel (more than \(fuel) instructions in one call; raise `fuel` if the work is real)" } else { reason = "trapped: \(reason)" }
            throw WasmCallFailure(description: "\(reason) in \(what)")
        }
        guard results.count == 1, case .i32(let v) = results[0] else {
            throw WasmCallFailure(description: "\(what) returned \(results) instead of one i32")
        }
        return v
    }

    /// Writes `batch` into linear memory, calls the module once, and applies what it answered.
    func run(_ batch: RecordBatch, into output: inout TransformOutput, component: String) throws {
        // Sizes first: descriptors, then every key, value and header, packed.
        let n = batch.count
        var size = WasmABI.headerBytes + n * WasmABI.descriptorBytes
        for s in batch.slots {
            size += max(0, Int(s.key.count)) + max(0, Int(s.value.count))
            for h in Int(s.headerStart)..<Int(s.headerStart + s.headerCount) {
                size += 8 + max(0, Int(batch.headers[h].name.count)) + max(0, Int(batch.headers[h].value.count))
            }
        }
        if size > inputCapacity {
            let want = max(size, inputCapacity * 2, 64 << 10)
            guard want < memoryLimit else { throw WasmCallFailure(description: "cannot take a batch of \(size) bytes under memory_limit \(memoryLimit)") }
            inputAt = try call(alloc, [.i32(UInt32(want))], what: "sluice_alloc(\(want))")
            guard inputAt != 0, Int(inputAt) + want <= memory.byteCount else {
                throw WasmCallFailure(description: "sluice_alloc(\(want)) returned \(inputAt), not a block inside its \(memory.byteCount)-byte memory")
            }
            inputCapacity = want
        }
        memory.withUnsafeMutableBufferPointer(offset: UInt(inputAt), count: size) { out in
            out.storeBytes(of: UInt32(n).littleEndian, toByteOffset: 0, as: UInt32.self)
            out.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
            var data = WasmABI.headerBytes + n * WasmABI.descriptorBytes
            func put(_ span: ByteSpan) -> (Int32, Int32) {
                guard !span.isNull else { return (0, -1) }
                let at = data
                batch.withBytes(span) { b in
                    if let b, b.count > 0 { UnsafeMutableRawBufferPointer(rebasing: out[at..<at + b.count]).copyMemory(from: b) }
                }
                data += Int(span.count)
                return (Int32(at), span.count)
            }
            for i in 0..<n {
                let s = batch.slots[i]
                let d = WasmABI.headerBytes + i * WasmABI.descriptorBytes
                let (ko, kl) = put(s.key)
                let (vo, vl) = put(s.value)
                let headersAt = data
                for h in Int(s.headerStart)..<Int(s.headerStart + s.headerCount) {
                    let header = batch.headers[h]
                    out.storeBytes(of: max(0, header.name.count).littleEndian, toByteOffset: data, as: Int32.self)
                    data += 4
                    _ = put(header.name)
                    out.storeBytes(of: header.value.count.littleEndian, toByteOffset: data, as: Int32.self)
                    data += 4
                    if !header.value.isNull { _ = put(header.value) }
                }
                out.storeBytes(of: ko.littleEndian, toByteOffset: d, as: Int32.self)
                out.storeBytes(of: kl.littleEndian, toByteOffset: d + 4, as: Int32.self)
                out.storeBytes(of: vo.littleEndian, toByteOffset: d + 8, as: Int32.self)
                out.storeBytes(of: vl.littleEndian, toByteOffset: d + 12, as: Int32.self)
                out.storeBytes(of: Int32(headersAt).littleEndian, toByteOffset: d + 16, as: Int32.self)
                out.storeBytes(of: s.headerCount.littleEndian, toByteOffset: d + 20, as: Int32.self)
                out.storeBytes(of: s.timestamp.littleEndian, toByteOffset: d + 24, as: Int64.self)
                out.storeBytes(of: s.offset.littleEndian, toByteOffset: d + 32, as: Int64.self)
                out.storeBytes(of: batch.lane(i).partition.littleEndian, toByteOffset: d + 40, as: Int32.self)
                out.storeBytes(of: Int32(0), toByteOffset: d + 44, as: Int32.self)
            }
        }
        let at = try call(transform, [.i32(inputAt), .i32(UInt32(size))], what: "sluice_transform")
        try read(answerAt: Int(at), batch, into: &output, component: component)
    }

    /// Reads `[u32 total bytes][u32 entries][entries…]` at `at` and applies each entry.
    private func read(answerAt at: Int, _ batch: RecordBatch, into output: inout TransformOutput, component: String) throws {
        let limit = memory.byteCount
        guard at > 0, at + 8 <= limit else { throw WasmCallFailure(description: "sluice_transform returned \(at), not an answer inside its \(limit)-byte memory") }
        let total = memory.withUnsafeBufferPointer(offset: UInt(at), count: 4) { Int(UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self))) }
        guard total >= 8, at + total <= limit else { throw WasmCallFailure(description: "sluice_transform's answer claims \(total) bytes at \(at), past its \(limit)-byte memory") }
        let n = batch.count
        // Kept and changed records go to `out` as they are read; if the answer turns out to be
        // malformed they are taken back, so a batch is applied whole or not at all.
        let mark = output.out.slots.count
        var errors: [(index: Int, message: String)] = []
        let failure: WasmCallFailure? = memory.withUnsafeBufferPointer(offset: UInt(at), count: total) { a -> WasmCallFailure? in
            func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: a.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
            func i32(_ o: Int) -> Int32 { Int32(littleEndian: a.loadUnaligned(fromByteOffset: o, as: Int32.self)) }
            let entries = Int(u32(4))
            var p = 8, last = -1
            for e in 0..<entries {
                guard p + 8 <= total else { return WasmCallFailure(description: "answer ends inside entry \(e) of \(entries)") }
                let op = u32(p), index = Int(u32(p + 4))
                guard index < n else { return WasmCallFailure(description: "answer entry \(e) names record \(index) of a batch of \(n)") }
                guard index >= last else { return WasmCallFailure(description: "answer entry \(e) names record \(index) after record \(last); entries must keep the input's order") }
                last = index
                p += 8
                switch op {
                case WasmABI.opKeep:
                    output.out.slots.append(batch.slots[index])
                case WasmABI.opValue, WasmABI.opError:
                    guard p + 4 <= total else { return WasmCallFailure(description: "answer ends inside entry \(e)") }
                    let len = Int(i32(p))
                    p += 4
                    guard len >= (op == WasmABI.opValue ? -1 : 0), p + max(0, len) <= total else { return WasmCallFailure(description: "answer entry \(e) has length \(len) past the answer's end") }
                    let bytes = UnsafeRawBufferPointer(rebasing: a[p..<p + max(0, len)])
                    if op == WasmABI.opError {
                        errors.append((index, String(decoding: bytes, as: UTF8.self)))
                    } else {
                        var slot = batch.slots[index]
                        slot.value = len < 0 ? .null : output.out.store(bytes)
                        slot.parse = .none
                        slot.fieldCount = 0
                        output.out.slots.append(slot)
                    }
                    p += (max(0, len) + 3) & ~3
                case WasmABI.opKeyValue:
                    guard p + 8 <= total else { return WasmCallFailure(description: "answer ends inside entry \(e)") }
                    let kl = Int(i32(p)), vl = Int(i32(p + 4))
                    p += 8
                    guard kl >= -1, vl >= -1, p + max(0, kl) + max(0, vl) <= total else { return WasmCallFailure(description: "answer entry \(e) has lengths \(kl), \(vl) past the answer's end") }
                    var slot = batch.slots[index]
                    slot.key = kl < 0 ? .null : output.out.store(UnsafeRawBufferPointer(rebasing: a[p..<p + kl]))
                    let vp = p + max(0, kl)
                    slot.value = vl < 0 ? .null : output.out.store(UnsafeRawBufferPointer(rebasing: a[vp..<vp + vl]))
                    slot.parse = .none
                    slot.fieldCount = 0
                    output.out.slots.append(slot)
                    p += (max(0, kl) + max(0, vl) + 3) & ~3
                default:
                    return WasmCallFailure(description: "answer entry \(e) has unknown op \(op) (0 keep, 1 value, 2 key and value, 3 error)")
                }
            }
            return nil
        }
        if let failure {
            output.out.slots.removeSubrange(mark...)
            throw failure
        }
        for (index, message) in errors { output.fail(batch.slots[index], component: component, message) }
    }
}
