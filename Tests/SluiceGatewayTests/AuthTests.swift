// Auth tokens (HS256 and RS256) and channel rules, through the gateway's public API.
import _CryptoExtras
import Foundation
import SluiceComponents
import SluiceGateway
import Testing

struct AuthTests {
    func claims(_ pairs: [(String, Value)]) -> ValueObject {
        var o = ValueObject()
        for (k, v) in pairs { o[k] = v }
        return o
    }

    @Test func rs256TokensSignedWithThePrivateKeyVerifyAndTamperedOnesDoNot() throws {
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let signer = GatewayAuth(key: try GatewayAuth.rs256(pem: key.pemRepresentation))
        let verifier = GatewayAuth(key: try GatewayAuth.rs256(pem: key.publicKey.pemRepresentation))
        let token = try #require(try signer.sign(claims([("sub", .string("ann")), ("role", .string("admin"))]), now: 1_000))
        #expect(token.hasPrefix("eyJhbGciOiJSUzI1NiIs"))
        guard case .success(let t) = verifier.verify(token, now: 1_001) else { Issue.record("a good RS256 token was refused"); return }
        #expect(t.claims["role"] == .string("admin") && t.expiry == 1_000 + 86_400)
        // A public key verifies but cannot sign.
        #expect(try verifier.sign(claims([("sub", .string("x"))])) == nil)
        // Another payload under the same signature.
        let parts = token.split(separator: ".")
        let forged = parts[0] + "." + Data(#"{"sub":"eve","role":"admin","exp":99999999}"#.utf8).base64EncodedString().replacingOccurrences(of: "=", with: "") + "." + parts[2]
        guard case .failure(let e) = verifier.verify(String(forged), now: 1_001) else { Issue.record("a tampered token passed"); return }
        #expect(e.name == "AuthTokenInvalidError" && e.isBadToken)
        // Expired.
        guard case .failure(let expired) = verifier.verify(token, now: 1_000 + 86_400) else { Issue.record("an expired token passed"); return }
        #expect(expired.name == "AuthTokenExpiredError")
    }

    @Test func anHS256ServerRefusesOtherKeysAndOtherAlgorithms() throws {
        let hs = GatewayAuth(key: .hs256(Array("secret".utf8)))
        let other = GatewayAuth(key: .hs256(Array("not the secret".utf8)))
        let token = try #require(try hs.sign(claims([("sub", .string("ann"))]), now: 10))
        guard case .success = hs.verify(token, now: 11) else { Issue.record("own token refused"); return }
        guard case .failure(let e) = other.verify(token, now: 11) else { Issue.record("a token of another key passed"); return }
        #expect(e.message == "invalid signature")
        let rsa = GatewayAuth(key: try GatewayAuth.rs256(pem: try _RSA.Signing.PrivateKey(keySize: .bits2048).pemRepresentation))
        guard case .failure(let alg) = rsa.verify(token, now: 11) else { Issue.record("an HS256 token passed an RS256 server"); return }
        #expect(alg.message.contains("HS256"))
        guard case .failure(let none) = GatewayAuth().verify(token) else { Issue.record("a server without a key accepted a token"); return }
        #expect(none.name == "AuthTokenInvalidError")
        guard case .failure(let junk) = hs.verify("not.a.jwt") else { Issue.record("junk passed"); return }
        #expect(junk.name == "AuthTokenInvalidError")
    }

    @Test func theFirstMatchingRuleDecidesByPatternAndClaim() throws {
        let rules = ChannelRules([
            ChannelRule(pattern: "admin.*", subscribe: .claim("role", .string("admin")), publish: .claim("role", .string("admin"))),
            ChannelRule(pattern: "news", subscribe: .anyone, publish: .nobody),
            ChannelRule(pattern: "*.private", subscribe: .authenticated, publish: .authenticated),
        ])
        let admin = VerifiedToken(claims: claims([("role", .string("admin"))]), expiry: nil)
        let user = VerifiedToken(claims: claims([("role", .string("user"))]), expiry: nil)
        #expect(rules.denies(.subscribe, channel: "admin.ops", token: admin) == nil)
        #expect(rules.denies(.subscribe, channel: "admin.ops", token: user)?.name == "ForbiddenError")
        #expect(rules.denies(.publish, channel: "news", token: admin)?.message == "publishing to news is not allowed (rule 'news')")
        #expect(rules.denies(.subscribe, channel: "news", token: nil) == nil)
        #expect(rules.denies(.subscribe, channel: "room.private", token: nil)?.message == "subscribing to room.private needs an auth token (rule '*.private')")
        #expect(rules.denies(.subscribe, channel: "room.private", token: user) == nil)
        #expect(rules.denies(.publish, channel: "anything.else", token: nil) == nil)
        #expect(ChannelAccess("claim tier=3") == .claim("tier", .int(3)))
        #expect(ChannelAccess("sometimes") == nil)
        #expect(Glob.matches("a*b*c", "axxbyyc") && !Glob.matches("a*b*c", "axxbyy") && Glob.matches("*", "") && !Glob.matches("room", "room.x"))
    }
}
