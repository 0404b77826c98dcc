// `sluice validate`, `sluice run` and the example pipelines, as users run them.
import Foundation
import Testing

@Suite(.serialized) struct PipelineCLITests {
    let scratch = Scratch()
    var data: String { scratch.path + "/data" }
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    @Test func validateReportsEveryProblemAsFileLineColumnAndExitsOne() throws {
        let file = scratch.path + "/broken.yaml"
        try """
        name: broken
        sources:
          g: { type: generatr, count: 1, template: "x" }
        transforms:
          f: { type: filter, inputs: [g], wehre: "a > 1" }
        sinks:
          out: { type: stdout, inputs: [f] }
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let r = try Sluice.run(["validate", file])
        #expect(r.status == 1)
        let lines = r.stderr.split(separator: "\n").map(String.init)
        #expect(lines.contains("\(file):3:14: error: unknown source type 'generatr' (did you mean 'generator'?)"), "\(r.stderr)")
        #expect(lines.contains { $0.hasPrefix("\(file):5:35: error: unknown field 'wehre' for transform type 'filter' (did you mean 'where'?)") }, "\(r.stderr)")
        #expect(lines.last == "3 errors" || lines.last?.hasSuffix("errors") == true)
    }

    @Test func validateAcceptsTheExamples() throws {
        let r = try Sluice.run(["validate", Self.repo + "/pipelines"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("ok: 3 pipelines, "))
    }

    @Test func theQuickstartRunsAndPrintsTheBigOrders() throws {
        let r = try Sluice.run(["run", Self.repo + "/pipelines/quickstart.yaml"], data: data)
        #expect(r.status == 0, "\(r.stderr)")
        let objects = try r.stdoutLines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(!objects.isEmpty)
        #expect(objects.allSatisfy { ($0["amount"] as! Int) > 50 && ($0["cents"] as! Int) == ($0["amount"] as! Int) * 100 })
        let c = try Sluice.run(["consume", "big-orders"], data: data)
        #expect(c.stdoutLines.count == objects.count)
    }

    @Test func ordersETLThenTheRouterWorker() throws {
        let out = scratch.path + "/enriched.jsonl"
        let env = "ORDERS_FILE=\(Self.repo)/pipelines/data/orders.jsonl OUT_FILE=\(out)"
        var r = try Sluice.run(["run", Self.repo + "/pipelines/orders-etl.yaml"], data: data, shellPrefix: "export \(env)")
        #expect(r.status == 0, "\(r.stderr)")
        let archived = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        #expect(!archived.isEmpty)
        let dlq = try Sluice.run(["consume", "orders-dlq"], data: data)
        #expect(dlq.stdoutLines == ["this line is not JSON", "this line is not JSON"])
        let enriched = try Sluice.run(["consume", "orders-enriched"], data: data)
        #expect(enriched.stdoutLines.count == archived.count)
        r = try Sluice.run(["run", Self.repo + "/pipelines/router.yaml", "--drain"], data: data)
        #expect(r.status == 0, "\(r.stderr)")
        let large = try Sluice.run(["consume", "orders-large"], data: data).stdoutLines
        let small = try Sluice.run(["consume", "orders-small"], data: data).stdoutLines
        #expect(large.count + small.count == archived.count)
    }
}
