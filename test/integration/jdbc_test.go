package integration

// The PostgreSQL JDBC driver through the proxy, in both pooling modes.
// pgjdbc switches to named server-side statements after prepareThreshold
// (5) executions, batches inserts into one Sync, reads with a fetch size
// through a suspended portal, and has its own COPY API: each is a path
// other drivers do not take the same way.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const jdbcProgram = `
import java.sql.*;
import java.util.*;

public class JdbcCheck {
  static List<String> errors = new ArrayList<>();
  static Map<String, String> out = new TreeMap<>();

  interface Step { String run() throws Exception; }

  static void step(String name, Step s) {
    try {
      out.put(name, s.run());
    } catch (Exception e) {
      errors.add(name + ": " + e);
    }
  }

  public static void main(String[] args) throws Exception {
    String url = args[0], table = args[1];
    Properties p = new Properties();
    p.setProperty("user", "postgres");
    p.setProperty("password", "x");
    p.setProperty("ApplicationName", "jdbc-check");
    try (Connection c = DriverManager.getConnection(url, p)) {
      step("threshold", () -> {
        long sum = 0;
        try (PreparedStatement ps = c.prepareStatement("SELECT ?::int + 1")) {
          for (int i = 0; i < 20; i++) {
            ps.setInt(1, i);
            try (ResultSet rs = ps.executeQuery()) { rs.next(); sum += rs.getInt(1); }
          }
        }
        return Long.toString(sum);
      });
      step("batch", () -> {
        c.setAutoCommit(false);
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + table + " (id, v) VALUES (?, ?)")) {
          for (int i = 1; i <= 500; i++) { ps.setInt(1, i); ps.setString(2, "r" + i); ps.addBatch(); }
          ps.executeBatch();
        }
        c.commit();
        c.setAutoCommit(true);
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*), sum(id) FROM " + table)) {
          rs.next();
          return rs.getLong(1) + "/" + rs.getLong(2);
        }
      });
      step("fetchsize", () -> {
        c.setAutoCommit(false);
        int n = 0, bad = 0;
        try (PreparedStatement ps = c.prepareStatement("SELECT id FROM " + table + " ORDER BY id")) {
          ps.setFetchSize(40);
          try (ResultSet rs = ps.executeQuery()) {
            while (rs.next()) { n++; if (rs.getInt(1) != n) bad++; }
          }
        }
        c.commit();
        c.setAutoCommit(true);
        return n + "/" + bad;
      });
      step("copy", () -> {
        org.postgresql.copy.CopyManager cm = c.unwrap(org.postgresql.PGConnection.class).getCopyAPI();
        long in = cm.copyIn("COPY " + table + " (id, v) FROM STDIN", new java.io.StringReader("1001\ta\n1002\tb\n"));
        java.io.StringWriter w = new java.io.StringWriter();
        cm.copyOut("COPY (SELECT count(*) FROM " + table + ") TO STDOUT", w);
        return in + "/" + w.toString().trim();
      });
      step("divzero", () -> {
        try (Statement s = c.createStatement()) {
          try {
            s.executeQuery("SELECT 1/0");
            return "no error";
          } catch (SQLException e) {
            try (ResultSet rs = s.executeQuery("SELECT 'ok'")) { rs.next(); return e.getSQLState() + "/" + rs.getString(1); }
          }
        }
      });
      step("appname", () -> {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SHOW application_name")) {
          rs.next();
          return rs.getString(1);
        }
      });
      step("metadata", () -> {
        try (ResultSet rs = c.getMetaData().getColumns(null, null, table, null)) {
          List<String> cols = new ArrayList<>();
          while (rs.next()) cols.add(rs.getString("COLUMN_NAME"));
          return String.join(",", cols);
        }
      });
    }
    for (Map.Entry<String, String> e : out.entrySet()) System.out.println(e.getKey() + "=" + e.getValue());
    for (String e : errors) System.out.println("error=" + e);
  }
}
`

// jdbcJar is where Debian's libpostgresql-jdbc-java puts the driver.
const jdbcJar = "/usr/share/java/postgresql.jar"

// requireJDBC returns the java launcher once it and the driver are there,
// skipping the test (failing it under CI=true) when they are not. The
// program runs as a single source file, which needs a JDK's compiler.
func requireJDBC(t *testing.T) string {
	t.Helper()
	fail := func(msg string) {
		if inCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	java, err := exec.LookPath("java")
	if err != nil {
		fail("java not found (Debian: apt-get install default-jdk-headless)")
	}
	if _, err := exec.LookPath("javac"); err != nil {
		fail("javac not found: single-file java programs need a JDK (Debian: apt-get install default-jdk-headless)")
	}
	if _, err := os.Stat(jdbcJar); err != nil {
		fail(fmt.Sprintf("%s missing (Debian: apt-get install libpostgresql-jdbc-java)", jdbcJar))
	}
	return java
}

func TestJDBC(t *testing.T) {
	leakCheck(t)
	java := requireJDBC(t)
	src := writeProgram(t, "JdbcCheck.java", jdbcProgram)
	forModes(t, proxyOpts{size: 3}, func(t *testing.T, e *env, mode string) {
		ctx, cancel := context.WithTimeout(testCtx(t), 2*time.Minute)
		defer cancel()
		table := uniqueName("jdbc")
		dropTable(t, e, table)
		d := e.direct(ctx)
		if _, err := d.Exec(ctx, "CREATE TABLE "+table+" (id int PRIMARY KEY, v text)"); err != nil {
			t.Fatal(err)
		}
		url := fmt.Sprintf("jdbc:postgresql://%s:%d/app?sslmode=disable", e.host, e.port)
		out, errOut, code := runCmd(ctx, t, "", clientEnv(), java, "-cp", jdbcJar, src, url, table)
		if code != 0 {
			t.Fatalf("java exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		got := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			k, v, _ := strings.Cut(line, "=")
			if k == "error" {
				t.Errorf("jdbc: %s", v)
				continue
			}
			got[k] = v
		}
		want := map[string]string{
			"threshold": "210",        // Σ(i+1), i < 20: named statements after the 5th run
			"batch":     "500/125250", // one batch of 500 inserts
			"fetchsize": "500/0",      // all rows, in order, 40 at a time
			"copy":      "2/502",
			"divzero":   "22012/ok",
			"appname":   "jdbc-check",
			"metadata":  "id,v",
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: got %q, want %q", k, got[k], v)
			}
		}
	})
}
