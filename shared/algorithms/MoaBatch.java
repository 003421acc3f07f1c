// Batches of records for a MOA learner in one call from Python (shared/algorithms/moa.py).
//
// Through JPype every Java call from Python costs microseconds, and building one MOA instance
// takes several (a DenseInstance, setDataset, then trainOnInstance): a record-by-record loop in
// Python spends more time crossing into the JVM than MOA spends learning. Here a batch crosses
// once, as one double[] (row-major, `width` values per record, the class value last, NaN for a
// missing value), and the loop over its records runs in Java.
//
// Compiled at install time (`python -m shared.algorithms.moa compile`, which `make install` and
// the Docker image's build stage run), never committed as a .class or a jar.
package streamer;

import com.yahoo.labs.samoa.instances.DenseInstance;
import com.yahoo.labs.samoa.instances.Instance;
import com.yahoo.labs.samoa.instances.InstancesHeader;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.ObjectInputStream;
import java.io.ObjectOutputStream;
import java.util.Arrays;
import moa.classifiers.Classifier;
import moa.core.Utils;

public final class MoaBatch {
    private MoaBatch() {}

    /** Learns the rows in order, each with weight 1 (as MOA's own evaluation loops do). */
    public static void train(Classifier learner, double[] rows, int width) {
        InstancesHeader header = learner.getModelContext();
        for (int start = 0; start < rows.length; start += width) {
            learner.trainOnInstance(instance(header, rows, start, width));
        }
    }

    /**
     * Test-then-train, as MOA's own evaluation loop does: each row is predicted (as
     * predictClasses, or as predictValues when `regression`), then learned unless its class
     * value is NaN (unlabelled). Returns the predictions, class indexes as doubles.
     */
    public static double[] predictThenTrain(
            Classifier learner, double[] rows, int width, boolean regression) {
        InstancesHeader header = learner.getModelContext();
        double[] predicted = new double[rows.length / width];
        for (int row = 0; row < predicted.length; row++) {
            Instance instance = instance(header, rows, row * width, width);
            double[] votes = learner.getVotesForInstance(instance);
            predicted[row] = regression ? value(votes) : Utils.maxIndex(votes);
            if (!Double.isNaN(instance.classValue())) {
                learner.trainOnInstance(instance);
            }
        }
        return predicted;
    }

    /**
     * Each row's class index as MOA's evaluation loops take it (Utils.maxIndex of the votes:
     * the first of the highest votes, so 0 when the learner gives none or only zeros).
     */
    public static int[] predictClasses(Classifier learner, double[] rows, int width) {
        InstancesHeader header = learner.getModelContext();
        int[] predicted = new int[rows.length / width];
        for (int row = 0; row < predicted.length; row++) {
            double[] votes = learner.getVotesForInstance(instance(header, rows, row * width, width));
            predicted[row] = Utils.maxIndex(votes);
        }
        return predicted;
    }

    /** Each row's votes, padded with zeros (or cut) to `classes` values, row after row. */
    public static double[] votes(Classifier learner, double[] rows, int width, int classes) {
        InstancesHeader header = learner.getModelContext();
        int count = rows.length / width;
        double[] all = new double[count * classes];
        for (int row = 0; row < count; row++) {
            double[] votes = learner.getVotesForInstance(instance(header, rows, row * width, width));
            System.arraycopy(votes, 0, all, row * classes, Math.min(votes.length, classes));
        }
        return all;
    }

    /** A regressor's prediction of each row (its first vote, 0 when it gives none, as MOA). */
    public static double[] predictValues(Classifier learner, double[] rows, int width) {
        InstancesHeader header = learner.getModelContext();
        double[] predicted = new double[rows.length / width];
        for (int row = 0; row < predicted.length; row++) {
            double[] votes = learner.getVotesForInstance(instance(header, rows, row * width, width));
            predicted[row] = value(votes);
        }
        return predicted;
    }

    /** Java serialization of a learner (its header included: the learner refers to it). */
    public static byte[] serialize(Object learner) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (ObjectOutputStream out = new ObjectOutputStream(bytes)) {
            out.writeObject(learner);
        }
        return bytes.toByteArray();
    }

    public static Object deserialize(byte[] serialized) throws IOException, ClassNotFoundException {
        try (ObjectInputStream in = new ObjectInputStream(new ByteArrayInputStream(serialized))) {
            return in.readObject();
        }
    }

    private static Instance instance(InstancesHeader header, double[] rows, int start, int width) {
        // a copy per record: some learners keep the instances they saw (kNN windows, SAMkNN)
        Instance instance = new DenseInstance(1.0, Arrays.copyOfRange(rows, start, start + width));
        instance.setDataset(header);
        return instance;
    }

    private static double value(double[] votes) {
        return votes.length > 0 ? votes[0] : 0.0;
    }
}
