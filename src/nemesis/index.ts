export { checkHistory, sharedLogModel } from './checker.js';
export type { CheckOptions, CheckResult, Counts, FaultWindow, FinalLog, LogRecord, Violation, ViolationKind } from './checker.js';
export { encodeEvent, operations, parseHistory, HistoryFormatError } from './history.js';
export type { HistoryEvent, NemesisEvent, Operation, OperationEvent, OperationKind } from './history.js';
export { formatSchedule, makeSchedule } from './schedule.js';
export type { ScheduleOptions, ScheduleStep } from './schedule.js';
export { renderReport } from './report.js';
export type { ReportInput } from './report.js';
