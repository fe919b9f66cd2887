// DemoOrders: the main process of the sandbox's demo/orders containers (sandbox.md §10).
//
// It stands in for a Spring service so the Java thread-dump job has something to dump:
// named worker threads doing periodic work, plus two threads that deadlock on purpose, so
// `jcmd <pid> Thread.print` reports "Found one Java-level deadlock". Run in single-file
// source mode: java -Xmx64m -XX:+UseSerialGC DemoOrders.java
import java.time.Instant;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;

public class DemoOrders {
    private static final Object INVENTORY_LOCK = new Object();
    private static final Object PAYMENT_LOCK = new Object();
    private static final ConcurrentLinkedQueue<Long> QUEUE = new ConcurrentLinkedQueue<>();
    private static final AtomicLong PROCESSED = new AtomicLong();

    public static void main(String[] args) throws InterruptedException {
        log("orders service starting, pid " + ProcessHandle.current().pid());

        Thread intake = new Thread(DemoOrders::intake, "order-intake");
        intake.setDaemon(true);
        intake.start();
        for (int i = 1; i <= 3; i++) {
            Thread worker = new Thread(DemoOrders::work, "order-worker-" + i);
            worker.setDaemon(true);
            worker.start();
        }

        // Both threads take the first lock, wait until the other holds its lock, then ask for
        // the other's: a guaranteed Java-level deadlock that the JVM's detector reports.
        CountDownLatch bothLocked = new CountDownLatch(2);
        Thread reserve = new Thread(() -> lockBoth(INVENTORY_LOCK, PAYMENT_LOCK, bothLocked),
                "inventory-reserver");
        Thread charge = new Thread(() -> lockBoth(PAYMENT_LOCK, INVENTORY_LOCK, bothLocked),
                "payment-charger");
        reserve.setDaemon(true);
        charge.setDaemon(true);
        reserve.start();
        charge.start();

        log("orders service ready");
        while (true) {
            Thread.sleep(10_000);
            log("processed " + PROCESSED.get() + " orders, queue " + QUEUE.size());
        }
    }

    private static void intake() {
        long id = 0;
        while (true) {
            QUEUE.add(++id);
            pause(200);
        }
    }

    private static void work() {
        while (true) {
            Long order = QUEUE.poll();
            if (order != null) {
                PROCESSED.incrementAndGet();
            }
            pause(100);
        }
    }

    private static void lockBoth(Object first, Object second, CountDownLatch bothLocked) {
        synchronized (first) {
            bothLocked.countDown();
            try {
                bothLocked.await();
            } catch (InterruptedException e) {
                return;
            }
            synchronized (second) {
                log("unreachable: " + Thread.currentThread().getName() + " got both locks");
            }
        }
    }

    private static void pause(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void log(String message) {
        System.out.println(Instant.now() + " [" + Thread.currentThread().getName() + "] " + message);
        System.out.flush();
    }
}
