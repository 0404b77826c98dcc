// `sluice validate` on a corpus of broken pipeline files: each file says, in `# expect:`
// lines at its end, every diagnostic the loader must report (line:column: severity: message).
import Foundation
import SluiceRuntime
import Testing

enum Corpus {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/invalid").path

    static var files: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".yaml") }.sorted()
    }

    static func expectations(_ path: String) -> [String] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            line.hasPrefix("# expect: ") ? String(line.dropFirst("# expect: ".count)) : nil
        }
    }
}

@Suite struct ValidateCorpusTests {
    @Test func theCorpusHasAtLeastTwentyFiveBrokenFiles() {
        #expect(Corpus.files.count >= 25)
        for f in Corpus.files { #expect(!Corpus.expectations(Corpus.directory + "/" + f).isEmpty, "\(f) has no expectations") }
    }

    @Test(arguments: Corpus.files)
    func eachBrokenFileReportsItsProblemsWithPositions(file: String) {
        let path = Corpus.directory + "/" + file
        let loader = PipelineLoader(environment: [:])
        do {
            _ = try loader.load(file: path)
            Issue.record("\(file) loaded without errors")
        } catch let e as PipelineLoadError {
            let got = e.diagnostics.map { d in
                "\(d.line):\(d.column): \(d.severity.rawValue): \(d.message)" + (d.hint.map { " (\($0))" } ?? "")
            }
            #expect(got == Corpus.expectations(path), "\(file)")
            #expect(e.diagnostics.allSatisfy { $0.file == path })
        } catch {
            Issue.record("\(file): unexpected \(error)")
        }
    }

    @Test func theExamplePipelinesAreValid() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("pipelines").path
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") && !$0.contains(".test.") }
        #expect(files.count >= 3)
        // pipelines/plugins.yaml uses the plugins in plugins/, found as `sluice validate` finds them.
        let registry = ComponentRegistry.builtIns()
        let catalog = PluginCatalog.discover(in: [dir + "/../plugins"])
        #expect((catalog.problems + catalog.register(in: registry)).isEmpty)
        for f in files {
            let p = try PipelineLoader(registry: registry, environment: [:]).load(file: dir + "/" + f)
            #expect(!p.nodes.isEmpty)
        }
    }

    @Test func environmentVariablesAreSubstitutedWithDefaults() throws {
        let text = """
        name: env
        topics:
          ${TOPIC:-fallback}: {}
        sources:
          in: { type: topic, topic: "${TOPIC:-fallback}", group: "${GROUP}" }
        sinks:
          out: { type: drop, inputs: [in] }
        """
        let p = try PipelineLoader(environment: ["GROUP": "g1"]).load(text: text, file: "env.yaml")
        #expect(p.topics.map(\.name) == ["fallback"])
        #expect(p.node("in")?.config.string("group") == "g1")
    }

    @Test func theComponentReferenceListsEveryFieldOfEveryComponent() {
        let registry = ComponentRegistry.builtIns()
        let md = registry.markdownReference()
        for kind in ComponentKind.allCases {
            for type in registry.types(kind) {
                #expect(md.contains("### `\(type)`"))
                for f in registry.spec(kind, type)!.fields { #expect(md.contains("| `\(f.name)` |")) }
            }
        }
    }
}

@Suite struct GeneratedDocsTests {
    @Test func docsComponentsMatchesTheRegistry() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("docs/components.md").path
        let onDisk = try String(contentsOfFile: path, encoding: .utf8)
        #expect(onDisk == ComponentRegistry.builtIns().markdownReference(), "regenerate with: swift run sluice components --markdown > docs/components.md")
    }
}
