import Testing

@testable import Switchboard

/// Where workers are started from: `argv[0]` as a shell would have found it, made absolute, links kept.
@Suite struct LaunchPathTests {
    static let files: Set<String> = ["/opt/app/current/bin/server", "/usr/local/bin/server", "/srv/run/server"]

    func resolve(_ argument0: String, path: String? = "/usr/local/bin:/usr/bin", directory: String? = "/srv/run",
                 running: Set<String> = files) -> String? {
        LaunchPath.resolve(
            argument0: argument0, searchPath: path, directory: directory, isExecutable: Self.files.contains,
            isRunningProgram: running.contains)
    }

    @Test func anAbsolutePathIsKeptWithItsLinks() {
        #expect(resolve("/opt/app/current/bin/server") == "/opt/app/current/bin/server")
    }

    @Test func aBareNameIsSearchedInPathInOrder() {
        #expect(resolve("server") == "/usr/local/bin/server")
        #expect(resolve("server", path: "/usr/bin:/srv/run:/usr/local/bin") == "/srv/run/server")
    }

    @Test func anEmptyPathEntryIsTheWorkingDirectory() {
        #expect(resolve("server", path: "/usr/bin::/usr/local/bin") == "/srv/run/server")
    }

    @Test func aRelativePathIsJoinedToTheWorkingDirectoryAtStart() {
        #expect(resolve("./server") == "/srv/run/server")
        #expect(resolve("server", path: nil) == nil, "no PATH: a bare name is not looked up")
        #expect(resolve("./server", directory: nil) == nil, "no working directory: nothing absolute to keep")
    }

    @Test func aPathThatIsNotTheRunningProgramIsNotUsed() {
        // argv[0] set to something else by the parent (exec -a), or the first match in PATH is another program.
        #expect(resolve("server", running: ["/srv/run/server"]) == nil)
        #expect(resolve("/usr/local/bin/missing") == nil)
        #expect(resolve("") == nil)
    }
}
