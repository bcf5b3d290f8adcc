/// The file workers are started from: the one the master was started by, as its command line named it.
///
/// A deploy replaces the program by renaming a new file over the old one (`install`, `mv`, package managers) or by
/// switching a `current` symbolic link to a new release. `/proc/self/exe` names the master's own image, which after
/// such a deploy is the old, unlinked file; the path the master was started by names whatever is there now. So the
/// master resolves that path once, at start (before anything changes the working directory), and spawns every
/// worker from it: a rolling reload then runs the build on disk, as Node's cluster re-reading `execPath` does.
package enum LaunchPath {
    /// The path to spawn workers from: `argument0` made absolute (searched in `searchPath` when it has no slash,
    /// joined to `directory` when relative), with symbolic links kept, so a switched `current` link is followed at
    /// each spawn. nil when it cannot be found, or when it is not the running program (an `argv[0]` set to
    /// something else by the parent, or a file already replaced): the caller falls back to `/proc/self/exe`.
    /// - Parameters:
    ///   - argument0: `argv[0]` as the process got it.
    ///   - searchPath: `PATH`, or nil.
    ///   - directory: The working directory at start, or nil.
    ///   - isExecutable: Whether a path is an executable regular file.
    ///   - isRunningProgram: Whether a path names the same file as the running program.
    package static func resolve(
        argument0: String, searchPath: String?, directory: String?, isExecutable: (String) -> Bool,
        isRunningProgram: (String) -> Bool
    ) -> String? {
        guard !argument0.isEmpty else { return nil }
        var candidates: [String?] = []
        if argument0.contains("/") {
            candidates.append(absolute(argument0, in: directory))
        } else if let searchPath {
            for entry in searchPath.split(separator: ":", omittingEmptySubsequences: false) {
                // An empty PATH entry means the working directory.
                let folder = entry.isEmpty ? "." : String(entry)
                candidates.append(absolute(folder + "/" + argument0, in: directory))
            }
        }
        for case let candidate? in candidates where isExecutable(candidate) {
            // The first executable match is what a shell ran; anything else is not the running program.
            return isRunningProgram(candidate) ? candidate : nil
        }
        return nil
    }

    /// Set by an upgrade for the image it execs: the launch path the master had (an old image execed back after a
    /// failed upgrade is no longer the file at that path, yet it is still where workers and upgrades start from).
    package static let handedVariable = "SWITCHBOARD_HANDOVER_LAUNCH_PATH"

    /// The launch path of this process, resolved once, or `/proc/self/exe` when none is known.
    package static let current: String = {
        if Syscalls.environment(Handover.variable) != nil, let handed = Syscalls.environment(handedVariable),
            Syscalls.isExecutableFile(handed)
        {
            return handed
        }
        let running = Syscalls.deviceAndInode(path: "/proc/self/exe")
        return resolve(
            argument0: CommandLine.arguments.first ?? "", searchPath: Syscalls.environment("PATH"),
            directory: Syscalls.currentDirectory(), isExecutable: Syscalls.isExecutableFile,
            isRunningProgram: { path in
                guard let running, let file = Syscalls.deviceAndInode(path: path) else { return false }
                return file == running
            }
        ) ?? fallback
    }()

    /// What workers are started from when the launch path is unknown: the master's own image.
    package static let fallback = "/proc/self/exe"

    /// `path` made absolute against `directory`; nil when it is relative and there is no directory.
    private static func absolute(_ path: String, in directory: String?) -> String? {
        if path.hasPrefix("/") { return normalized(path) }
        guard let directory, directory.hasPrefix("/") else { return nil }
        return normalized(directory + "/" + path)
    }

    /// Removes `.` components and repeated slashes; `..` is kept (with symbolic links it is not lexical).
    private static func normalized(_ path: String) -> String {
        let parts = path.split(separator: "/").filter { $0 != "." }
        return "/" + parts.joined(separator: "/")
    }
}
