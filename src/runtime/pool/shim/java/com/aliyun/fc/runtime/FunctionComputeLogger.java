package com.aliyun.fc.runtime;

/**
 * Writes `<UTC time with milliseconds>Z <request id> [LEVEL] message` lines to the function's log. Lines below
 * the level set with {@link #setLogLevel} are dropped; the level starts at TRACE (every line is written).
 */
public interface FunctionComputeLogger {

    /** Logs at TRACE level. */
    void trace(String string);

    /** Logs at DEBUG level. */
    void debug(String string);

    /** Logs at INFO level. */
    void info(String string);

    /** Logs at WARN level. */
    void warn(String string);

    /** Logs at ERROR level. */
    void error(String string);

    /** Logs at FATAL level. */
    void fatal(String string);

    /** Drops the lines of lower levels from now on (for this instance). */
    void setLogLevel(Level level);

    /** Log levels, lowest first. */
    enum Level {
        TRACE, DEBUG, INFO, WARN, ERROR, FATAL
    }
}
