package example;

import com.aliyun.fc.runtime.Context;
import com.aliyun.fc.runtime.FunctionComputeLogger;
import com.aliyun.fc.runtime.StreamRequestHandler;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;

/** Logs at every level, then raises the level; prints to stdout and stderr too. */
public class LogFC implements StreamRequestHandler {

    @Override
    public void handleRequest(InputStream input, OutputStream output, Context context) throws IOException {
        FunctionComputeLogger logger = context.getLogger();
        logger.setLogLevel(FunctionComputeLogger.Level.TRACE);
        logger.trace("trace line");
        logger.debug("debug line");
        logger.info("info line");
        logger.warn("warn line");
        logger.error("error line");
        logger.fatal("fatal line");
        logger.setLogLevel(FunctionComputeLogger.Level.WARN);
        logger.info("hidden info line");
        logger.warn("shown warn line");
        System.out.println("stdout line");
        System.err.println("stderr line");
        output.write("logged".getBytes("UTF-8"));
    }
}
