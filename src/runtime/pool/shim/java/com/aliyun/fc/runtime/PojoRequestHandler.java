package com.aliyun.fc.runtime;

/**
 * A handler whose event is JSON mapped to an object of type I, and whose result is written back as JSON.
 *
 * @param <I> the event's type
 * @param <O> the result's type
 */
public interface PojoRequestHandler<I, O> {

    /**
     * Handles one invocation.
     *
     * @param input the event, mapped from JSON
     * @param context the invocation's context
     * @return the result, written as JSON
     */
    public O handleRequest(I input, Context context);
}
