import ArgumentParser
import Logging
import Switchboard

#if canImport(Glibc)
import Glibc
#endif

// Errors are one line saying what is wrong and how to fix it; help and version go to stdout.
do {
    var command = try SwitchboardCommand.parseAsRoot()
    let format = (command as? SwitchboardCommand).flatMap { SwitchboardLogHandler.Format(rawValue: $0.logFormat) }
    LoggingSystem.bootstrap { label in SwitchboardLogHandler(label: label, format: format ?? .auto) }
    try command.run()
} catch let error as SwitchboardError {
    Output.error(error.message)
    exit(error.code.exitCode)
} catch {
    let code = SwitchboardCommand.exitCode(for: error)
    if code == .success {
        Output.line(SwitchboardCommand.fullMessage(for: error))
        exit(0)
    }
    let message = SwitchboardCommand.message(for: error)
    if !message.isEmpty {
        let isUsage = code == .validationFailure
        Output.error(isUsage ? "\(message) (see 'switchboard --help')" : message)
    }
    exit(code.rawValue)
}
