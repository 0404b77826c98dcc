// The one parser for durations and sizes, shared by pipeline files and command-line flags.
import SluiceRuntime
import Testing

@Suite struct DurationsTests {
    @Test func durationsInEveryUnitDecimalsAndForever() {
        #expect(Durations.milliseconds("500ms") == 500)
        #expect(Durations.milliseconds("1.5s") == 1_500)
        #expect(Durations.milliseconds(" 10S ") == 10_000)
        #expect(Durations.milliseconds("30m") == 1_800_000)
        #expect(Durations.milliseconds("12h") == 43_200_000)
        #expect(Durations.milliseconds("7d") == 604_800_000)
        #expect(Durations.milliseconds("2w") == 1_209_600_000)
        #expect(Durations.milliseconds("250") == 250, "a bare number is milliseconds")
        for forever in ["forever", "infinite", "-1"] { #expect(Durations.milliseconds(forever) == -1) }
        for bad in ["", "ten seconds", "-5s", "5x", "99999999999999999w"] { #expect(Durations.milliseconds(bad) == nil, "'\(bad)'") }
    }

    @Test func sizesBinaryAndDecimalAndUnlimitedOnlyWhereAllowed() {
        #expect(Durations.bytes("1024") == 1024)
        #expect(Durations.bytes("64KiB") == 65_536)
        #expect(Durations.bytes("10MB") == 10_000_000)
        #expect(Durations.bytes("1GiB") == 1 << 30)
        #expect(Durations.bytes("2g") == 2 << 30)
        #expect(Durations.bytes("1TiB") == 1 << 40)
        #expect(Durations.bytes("512b") == 512)
        #expect(Durations.bytes("unlimited") == nil && Durations.bytes("-1") == nil, "a size is not unlimited unless the setting allows it")
        #expect(Durations.bytes("unlimited", unlimited: true) == -1 && Durations.bytes("-1", unlimited: true) == -1)
        for bad in ["", "lots", "-3KiB", "99999999999999TiB"] { #expect(Durations.bytes(bad) == nil, "'\(bad)'") }
    }

    @Test func formatsAreTheShortestExactForms() {
        #expect(Durations.format(milliseconds: 604_800_000) == "7d")
        #expect(Durations.format(milliseconds: 50) == "50ms")
        #expect(Durations.format(milliseconds: 90_000) == "90s")
        #expect(Durations.format(milliseconds: -1) == "forever")
        #expect(Durations.format(bytes: 128 << 20) == "128MiB")
        #expect(Durations.format(bytes: 1000) == "1000B")
        #expect(Durations.format(bytes: -1) == "unlimited")
        for text in ["7d", "12h", "30m", "45s", "500ms"] { #expect(Durations.format(milliseconds: Durations.milliseconds(text)!) == text) }
    }
}
