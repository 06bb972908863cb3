import ChatSync
@testable import ChatSyncServer
import Foundation
import Hummingbird
import XCTest

/// The OpenAPI document in Store/ is the contract: every route the server registers is in it,
/// and every operation in it is a route.
final class ContractTests: XCTestCase {
    var root: String {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }

    func testEveryRouteIsInTheOpenAPIDocumentAndTheReverse() throws {
        let store = try makeServerStore(self)
        let router = buildRouter(store: store)
        let served = Set(router.routes.map { "\($0.method.rawValue) \($0.path)" })
        let data = try XCTUnwrap(FileManager.default.contents(atPath: root + "/Store/openapi.json"))
        let doc = try JSONDecoder().decode(JSONValue.self, from: data)
        guard case .object(let paths)? = doc["paths"] else { return XCTFail("no paths") }
        var documented = Set<String>()
        for (path, item) in paths {
            for method in ["get", "put", "post", "patch", "delete"] where item[method] != nil {
                documented.insert("\(method.uppercased()) \(path)")
            }
        }
        XCTAssertEqual(served.subtracting(documented).sorted(), [], "routes the document lacks")
        XCTAssertEqual(documented.subtracting(served).sorted(), [], "documented operations the server lacks")
        XCTAssertGreaterThan(served.count, 40)
    }

    func testTheServerServesExactlyTheFilesOfStore() throws {
        XCTAssertEqual(EmbeddedStore.openAPI + "\n", try String(contentsOfFile: root + "/Store/openapi.json", encoding: .utf8),
                       "run python3 Store/embed.py after changing Store/")
        let names = try FileManager.default.contentsOfDirectory(atPath: root + "/Store/schemas").filter { $0.hasSuffix(".json") }
        XCTAssertEqual(Set(EmbeddedStore.schemas.keys), Set(names))
        for name in names {
            XCTAssertEqual(EmbeddedStore.schemas[name].map { $0 + "\n" }, try String(contentsOfFile: root + "/Store/schemas/\(name)", encoding: .utf8), name)
        }
    }
}
