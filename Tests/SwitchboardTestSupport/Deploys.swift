import Foundation

/// Deploying as users do, for the tests of every target: a new build written beside the old file and renamed over it
/// (`install`, `mv`, package managers), and what a process runs afterwards.
package enum Deploys {
    /// A folder of its own for one test's releases.
    package static func folder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sb-deploy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Writes a copy of `source` with `marker` appended (a build that differs) at `path`, executable.
    package static func writeBuild(of source: String, marker: String, at path: String) throws {
        var bytes = try Data(contentsOf: URL(fileURLWithPath: source))
        bytes.append(Data(marker.utf8))
        try bytes.write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
    }

    /// Writes `text` as an executable file at `path`.
    package static func writeScript(_ text: String, at path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
    }

    /// Deploys `write`'s file over `path` the way `install` and `mv` do: a new file beside it, renamed over it.
    /// - Returns: The inode of the deployed file.
    package static func deploy(over path: String, _ write: (String) throws -> Void) throws -> UInt64 {
        let staged = path + ".new"
        try write(staged)
        guard rename(staged, path) == 0 else { throw ProbeError.io("rename over \(path): errno \(errno)") }
        guard let inode = inode(path) else { throw ProbeError.io("no file at \(path) after the rename") }
        return inode
    }

    package static func inode(_ path: String) -> UInt64? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return UInt64(info.st_ino)
    }

    /// What `/proc/<pid>/exe` names (`… (deleted)` for a file renamed over) and the inode it opens.
    package static func executable(_ pid: pid_t) -> (path: String, inode: UInt64?) {
        let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? "?"
        return (path, inode("/proc/\(pid)/exe"))
    }

    /// Waits until `count` workers run, none of them in `old`, every one of them from the file with `inode`.
    package static func waitForWorkers(
        of server: SwitchboardProcess, count: Int, notIn old: Set<pid_t>, runningInode inode: UInt64,
        timeout: Duration = .seconds(30)
    ) -> [pid_t] {
        var workers: [pid_t] = []
        _ = waitUntil(timeout: timeout) {
            workers = server.workerPIDs
            return workers.count == count && old.isDisjoint(with: workers)
                && workers.allSatisfy { executable($0).inode == inode }
        }
        return workers
    }
}
