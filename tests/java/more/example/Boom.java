package example;

import com.aliyun.fc.runtime.Context;
import com.aliyun.fc.runtime.StreamRequestHandler;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.ArrayList;
import java.util.List;

/** Handlers that misbehave: exit, sleep past the timeout, fill the heap, throw with a cause. */
public class Boom implements StreamRequestHandler {
    private static final List<byte[]> HOARD = new ArrayList<>();

    @Override
    public void handleRequest(InputStream input, OutputStream output, Context context) throws IOException {
        output.write("fine".getBytes("UTF-8"));
    }

    public void exit(InputStream input, OutputStream output, Context context) {
        System.out.println("exiting");
        System.exit(3);
    }

    public void sleep(InputStream input, OutputStream output, Context context) throws IOException {
        System.out.println("MARK sleeping " + context.getRequestId());
        try {
            Thread.sleep(60_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        output.write("woke".getBytes("UTF-8"));
    }

    public void hoard(InputStream input, OutputStream output, Context context) throws IOException {
        while (true) {
            HOARD.add(new byte[4 * 1024 * 1024]);
        }
    }

    public void caused(InputStream input, OutputStream output, Context context) throws IOException {
        try {
            Integer.parseInt("not a number");
        } catch (NumberFormatException e) {
            throw new IllegalStateException("wrapped", e);
        }
    }
}
