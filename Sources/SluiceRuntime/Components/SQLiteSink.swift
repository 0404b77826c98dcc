// The sqlite sink: rows from expressions, inserted or upserted with GRDB. Under exactly-once
// a lane's rows and its next source offset are written in one SQLite transaction, so the
// database alone knows how far each source partition got.
import Foundation
import GRDB
import SluiceLog
import Synchronization

final class SQLiteSink: ExactlyOnceSink {
    let id: String
    let path: String
    let table: String
    let columns: [(name: String, expression: CompiledExpression)]
    let keyColumns: [String]
    let pipelineName: String
    private let db: DatabaseQueue
    private let insertSQL: String

    private struct LaneState {
        var rows: [[DatabaseValue]] = []
        /// The next source offset stored in the database (nil: none yet).
        var applied: Int64?
        var loaded = false
    }
    private let lanes = Mutex<[SourceLane: LaneState]>([:])

    init(id: String, path: String, table: String, columns: [(name: String, expression: CompiledExpression)], keyColumns: [String], pipelineName: String) throws {
        self.id = id
        self.path = path
        self.table = table
        self.columns = columns
        self.keyColumns = keyColumns
        self.pipelineName = pipelineName
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        var config = Configuration()
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            db = try DatabaseQueue(path: path, configuration: config)
        } catch {
            throw ComponentError(component: id, "cannot open SQLite database \(path): \(Self.describe(error))")
        }
        let q = { (s: String) in "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
        let names = columns.map { q($0.name) }.joined(separator: ", ")
        let marks = Array(repeating: "?", count: columns.count).joined(separator: ", ")
        var sql = "INSERT INTO \(q(table)) (\(names)) VALUES (\(marks))"
        if !keyColumns.isEmpty {
            let updates = columns.filter { !keyColumns.contains($0.name) }.map { "\(q($0.name)) = excluded.\(q($0.name))" }
            sql += " ON CONFLICT (\(keyColumns.map(q).joined(separator: ", "))) DO " + (updates.isEmpty ? "NOTHING" : "UPDATE SET " + updates.joined(separator: ", "))
        }
        insertSQL = sql
        let create = "CREATE TABLE IF NOT EXISTS \(q(table)) (\(names)\(keyColumns.isEmpty ? "" : ", UNIQUE (\(keyColumns.map(q).joined(separator: ", ")))"))"
        do {
            try db.write { db in
                try db.execute(sql: create)
                try db.execute(sql: "CREATE TABLE IF NOT EXISTS sluice_offsets (pipeline TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL, PRIMARY KEY (pipeline, topic, partition))")
            }
        } catch {
            throw ComponentError(component: id, "cannot prepare table \(table) in \(path): \(Self.describe(error))")
        }
    }

    private static func describe(_ error: any Error) -> String {
        if let e = error as? DatabaseError { return e.message ?? "\(e.resultCode)" }
        return "\(error)"
    }

    /// Record `i`'s row: each column's expression evaluated on the record.
    private func row(_ batch: RecordBatch, _ i: Int) throws -> [DatabaseValue] {
        var out: [DatabaseValue] = []
        out.reserveCapacity(columns.count)
        try batch.withContext(i) { context in
            for (name, expression) in columns {
                let v: Value
                do { v = try expression.evaluate(context) } catch let e {
                    let lane = batch.lane(i)
                    throw ComponentError(component: id, "column \(name): \(expressionMessage(e)) (record \(lane.topic ?? "-")/\(lane.partition)@\(batch.slots[i].offset))")
                }
                switch v {
                case .null: out.append(.null)
                case .bool(let b): out.append(b.databaseValue)
                case .int(let n): out.append(n.databaseValue)
                case .double(let d): out.append(d.databaseValue)
                case .string(let s): out.append(s.databaseValue)
                case .array, .object: out.append(String(decoding: JSON.serialize(v), as: UTF8.self).databaseValue)
                }
            }
        }
        return out
    }

    private func insert(_ rows: [[DatabaseValue]], _ db: Database) throws {
        let statement = try db.cachedStatement(sql: insertSQL)
        for r in rows { try statement.execute(arguments: StatementArguments(r)) }
    }

    func write(_ batch: RecordBatch, context: LaneContext) async throws {
        guard let txn = context.transaction else {
            // At-least-once: each batch is one SQLite transaction.
            var rows: [[DatabaseValue]] = []
            rows.reserveCapacity(batch.count)
            for i in 0..<batch.count { rows.append(try row(batch, i)) }
            do { try await db.write { [rows] db in try self.insert(rows, db) } } catch let e as ComponentError { throw e } catch {
                throw ComponentError(component: id, "cannot write to \(path): \(Self.describe(error))")
            }
            return
        }
        // Exactly-once: hold the lane's rows until the runner commits the lane; skip records
        // whose effects the database already has.
        let applied = try await appliedOffset(txn.lane)
        var rows: [[DatabaseValue]] = []
        rows.reserveCapacity(batch.count)
        for i in 0..<batch.count where applied.map({ batch.slots[i].offset >= $0 }) ?? true { rows.append(try row(batch, i)) }
        lanes.withLock { $0[txn.lane, default: LaneState()].rows += rows }
    }

    func appliedOffset(_ lane: SourceLane) async throws -> Int64? {
        if let s = lanes.withLock({ $0[lane] }), s.loaded { return s.applied }
        let stored: Int64?
        do {
            stored = try await db.read { db in
                try Int64.fetchOne(db, sql: "SELECT next_offset FROM sluice_offsets WHERE pipeline = ? AND topic = ? AND partition = ?", arguments: [self.pipelineName, lane.topic ?? "", Int64(lane.partition)])
            }
        } catch {
            throw ComponentError(component: id, "cannot read offsets from \(path): \(Self.describe(error))")
        }
        lanes.withLock { l in
            l[lane, default: LaneState()].applied = stored
            l[lane]!.loaded = true
        }
        return stored
    }

    func commit(_ lane: SourceLane, next: Int64) async throws {
        let rows = lanes.withLock { l -> [[DatabaseValue]] in
            defer { l[lane]?.rows = [] }
            return l[lane]?.rows ?? []
        }
        do {
            try await db.write { db in
                try self.insert(rows, db)
                try db.execute(sql: "INSERT INTO sluice_offsets (pipeline, topic, partition, next_offset) VALUES (?, ?, ?, ?) ON CONFLICT (pipeline, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                               arguments: [self.pipelineName, lane.topic ?? "", Int64(lane.partition), next])
            }
        } catch {
            throw ComponentError(component: id, "cannot commit to \(path): \(Self.describe(error))")
        }
        lanes.withLock { l in
            l[lane]?.applied = next
        }
    }

    func abort(_ lane: SourceLane) async {
        // Forget the rows and what was loaded: the next owner of the lane reads the stored offset again.
        lanes.withLock { $0[lane] = nil }
    }

    func close() async throws {}
}
