import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.HexFormat;
import java.util.Properties;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Writes records to Kafka with Apache Kafka's own producer, as a Java service would, from commands on stdin
 * (stack/java_producer.py writes them; bytes are "x" and their hex, so that empty bytes are "x"; "-" is null):
 *
 *   begin | commit | abort          a transaction (needs --transactional-id)
 *   send TOPIC PARTITION KEY VALUE [NAME=VALUE ...]    PARTITION "-" lets the partitioner choose; NAME is hex
 *                                                      of its UTF-8 bytes
 *   flush                           wait for every record sent so far
 *   crash                           exit at once, the producer left open (a transaction left in flight)
 *
 * Each acknowledged record is printed as "acked TOPIC PARTITION OFFSET", in the order sent.
 * Arguments: BOOTSTRAP [--transactional-id ID] [--compression CODEC] [--linger-ms MS].
 */
public final class RecordWriter {
    public static void main(String[] args) throws Exception {
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        for (int index = 1; index + 1 < args.length; index += 2) {
            switch (args[index]) {
                case "--transactional-id" -> config.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, args[index + 1]);
                case "--compression" -> config.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, args[index + 1]);
                case "--linger-ms" -> config.put(ProducerConfig.LINGER_MS_CONFIG, args[index + 1]);
                default -> throw new IllegalArgumentException("unknown option " + args[index]);
            }
        }
        HexFormat hex = HexFormat.of();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(config)) {
            if (config.containsKey(ProducerConfig.TRANSACTIONAL_ID_CONFIG)) {
                producer.initTransactions();
            }
            BufferedReader input = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            for (String line; (line = input.readLine()) != null; ) {
                String[] words = line.trim().split(" ");
                switch (words[0]) {
                    case "begin" -> producer.beginTransaction();
                    case "commit" -> producer.commitTransaction();
                    case "abort" -> producer.abortTransaction();
                    case "flush" -> producer.flush();
                    case "crash" -> {
                        System.out.flush();
                        Runtime.getRuntime().halt(3);
                    }
                    case "send" -> {
                        RecordHeaders headers = new RecordHeaders();
                        for (int index = 5; index < words.length; index++) {
                            String[] header = words[index].split("=", 2);
                            headers.add(new String(bytes(hex, header[0]), StandardCharsets.UTF_8),
                                        bytes(hex, header[1]));
                        }
                        Integer partition = words[2].equals("-") ? null : Integer.valueOf(words[2]);
                        producer.send(new ProducerRecord<>(words[1], partition, bytes(hex, words[3]),
                                                           bytes(hex, words[4]), headers),
                                      (metadata, error) -> {
                                          if (error != null) {
                                              System.out.println("failed " + error);
                                          } else {
                                              System.out.println("acked " + metadata.topic() + " "
                                                                 + metadata.partition() + " " + metadata.offset());
                                          }
                                          System.out.flush();
                                      });
                    }
                    default -> throw new IllegalArgumentException("unknown command " + line);
                }
            }
            producer.flush();
        }
    }

    private static byte[] bytes(HexFormat hex, String word) {
        return word.equals("-") ? null : hex.parseHex(word.substring(1));
    }
}
