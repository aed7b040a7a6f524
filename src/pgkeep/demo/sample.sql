-- A small shop for `make run`: a few tables, a view and some rows to back up.
CREATE TABLE customer (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL,
    email      text UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE product (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title text NOT NULL,
    price numeric(10, 2) NOT NULL CHECK (price >= 0)
);
CREATE TABLE purchase (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customer (id),
    product_id  bigint NOT NULL REFERENCES product (id),
    quantity    integer NOT NULL DEFAULT 1,
    bought_at   timestamptz NOT NULL
);
INSERT INTO customer (name, email)
SELECT 'Customer ' || i, 'customer' || i || '@example.org' FROM generate_series(1, 500) AS i;
INSERT INTO product (title, price)
SELECT 'Product ' || i, round((random() * 100)::numeric, 2) FROM generate_series(1, 100) AS i;
INSERT INTO purchase (customer_id, product_id, quantity, bought_at)
SELECT 1 + (i % 500), 1 + (i % 100), 1 + (i % 3), now() - (i || ' minutes')::interval
FROM generate_series(1, 5000) AS i;
CREATE VIEW revenue_by_product AS
SELECT p.title, sum(p.price * pu.quantity) AS revenue
FROM purchase pu JOIN product p ON p.id = pu.product_id GROUP BY p.title;
