// Prints the plain closing line `N passed, N failed[, N skipped]` after jest's own summary (which goes
// to stderr in another format). Suites that fail to load count as failures; jest's exit code is kept.
class SummaryReporter {
  onRunComplete(_contexts, r) {
    const skipped = r.numPendingTests + r.numTodoTests;
    const failed = r.numFailedTests + r.numRuntimeErrorTestSuites;
    const line = `${r.numPassedTests} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : '');
    process.once('exit', () => process.stdout.write(`${line}\n`));
  }
}
module.exports = SummaryReporter;
