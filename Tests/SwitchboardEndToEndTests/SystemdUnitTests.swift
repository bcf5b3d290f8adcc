import Foundation
import SwitchboardTestSupport
import Testing

extension EndToEndTests {
    @Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze"), "needs systemd-analyze"))
    struct SystemdUnits {
        func verify(_ units: URL) throws -> (status: Int32, output: String) {
            let result = try SystemdSandbox.run(
                "/bin/bash", [SystemdSandbox.repositoryRoot.appendingPathComponent("Scripts/systemd-verify.sh").path, units.path])
            return (result.status, result.stdout + result.stderr)
        }

        @Test func theUnitFilesPassSystemdAnalyzeVerifyAndRateOK() throws {
            let result = try verify(SystemdSandbox.repositoryRoot.appendingPathComponent("systemd"))
            #expect(result.status == 0, "\(result.output)")
            let score = result.output.split(separator: "\n").first { $0.hasPrefix("security: ") }
            #expect(score == "security: 1.1 OK", "\(result.output)")
        }

        @Test func aBrokenUnitFileIsCaught() throws {
            let units = try makeUnits(port: 3000, socket: true, serviceDropIn: "")
            defer { try? FileManager.default.removeItem(at: units) }
            try FileManager.default.removeItem(at: units.appendingPathComponent("switchboard.service.d"))
            let socket = units.appendingPathComponent("switchboard.socket")
            let text = try String(contentsOf: socket, encoding: .utf8).replacingOccurrences(of: "ListenStream=", with: "ListenStrem=")
            try text.write(to: socket, atomically: true, encoding: .utf8)
            let result = try verify(units)
            #expect(result.status == 1)
            #expect(result.output.contains("Unknown key 'ListenStrem'"))
        }
    }
}
