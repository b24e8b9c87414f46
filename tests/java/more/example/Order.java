package example;

import java.util.List;
import java.util.Map;

/** A nested POJO: lists of beans, maps, numbers, booleans, an enum; fields without setters. */
public class Order {
    public enum Kind { RETAIL, WHOLESALE }

    public static class Item {
        private String sku;
        private int quantity;
        private double price;

        public String getSku() { return sku; }
        public int getQuantity() { return quantity; }
        public double getPrice() { return price; }
    }

    private String id;
    private Kind kind;
    private boolean gift;
    private long customer;
    private List<Item> items;
    private Map<String, Integer> tags;

    public String getId() { return id; }
    public void setId(String id) { this.id = id; }
    public Kind getKind() { return kind; }
    public boolean isGift() { return gift; }
    public long getCustomer() { return customer; }
    public List<Item> getItems() { return items; }
    public Map<String, Integer> getTags() { return tags; }
}
