package example;

import com.aliyun.fc.runtime.Context;
import com.aliyun.fc.runtime.PojoRequestHandler;

import java.util.LinkedHashMap;
import java.util.Map;

/** Sums an order: the event is mapped to {@link Order}, the answer is a map written as JSON. */
public class OrderFC implements PojoRequestHandler<Order, Map<String, Object>> {
    /** Orders this instance has summed: shows a warm instance serving again. */
    private int served;

    @Override
    public Map<String, Object> handleRequest(Order order, Context context) {
        Map<String, Object> summary = new LinkedHashMap<>();
        if (order == null) {
            summary.put("empty", true);
            return summary;
        }
        double total = 0;
        int units = 0;
        for (Order.Item item : order.getItems()) {
            total += item.getQuantity() * item.getPrice();
            units += item.getQuantity();
        }
        summary.put("id", order.getId());
        summary.put("kind", order.getKind());
        summary.put("gift", order.isGift());
        summary.put("customer", order.getCustomer());
        summary.put("units", units);
        summary.put("total", total);
        summary.put("tags", order.getTags());
        summary.put("first", order.getItems().isEmpty() ? null : order.getItems().get(0));
        summary.put("served", ++served);
        return summary;
    }
}
